"""A small closed set of HTTP clients sending at a steady pace, recording every answer (tests, not benchmarks)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.integration.serving.http_server import Client


@dataclass
class Answer:
    at: float
    status: int
    body: Any


@dataclass
class Load:
    port: int
    body: Callable[[int], dict[str, Any]]
    rate: float = 500.0
    threads: int = 4
    answers: list[list[Answer]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        for i in range(self.threads):
            mine: list[Answer] = []
            self.answers.append(mine)
            worker = threading.Thread(target=self._run, args=(i, mine), daemon=True)
            self._workers.append(worker)
            worker.start()
        return self

    def _run(self, index: int, out: list[Answer]) -> None:
        client = Client(self.port)
        interval = self.threads / self.rate
        n = index
        next_at = time.monotonic()
        try:
            while not self._stop.is_set():
                try:
                    status, body = client.request("POST", "/v1/fraud/score", self.body(n))
                except OSError as exc:  # a dropped connection is a failed request too
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                    client.close()
                    client = Client(self.port)
                    continue
                out.append(Answer(time.monotonic(), status, body))
                n += self.threads
                next_at += interval
                time.sleep(max(0.0, next_at - time.monotonic()))
        finally:
            client.close()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(10)

    @property
    def all(self) -> list[Answer]:
        return sorted((a for answers in self.answers for a in answers), key=lambda a: a.at)

    def wait_for(self, predicate: Callable[[Answer], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(predicate(a) for answers in self.answers for a in answers[-50:]):
                return True
            time.sleep(0.05)
        return False
