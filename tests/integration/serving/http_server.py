"""A real uvicorn server in a thread, on a free port, for the HTTP tests (no test client: the real stack)."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running(app: FastAPI) -> Iterator[int]:
    """Serve ``app`` (lifespan included) until the block ends; yields the port."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            msg = "uvicorn did not start"
            raise RuntimeError(msg)
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(15)


class Client:
    """A keep-alive HTTP/1.1 client on one connection."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.last: http.client.HTTPResponse | None = None  # the last response, for its headers

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        payload = None if body is None else orjson.dumps(body)
        sent = {"content-type": "application/json"} if payload is not None else {}
        self.conn.request(method, path, payload, {**sent, **(headers or {})})
        self.last = response = self.conn.getresponse()
        data = response.read()
        ctype = response.getheader("content-type") or ""
        return response.status, orjson.loads(data) if "json" in ctype else data.decode()

    def close(self) -> None:
        self.conn.close()
