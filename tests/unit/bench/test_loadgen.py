"""The open-loop load generator's pure parts, and one run against a tiny loopback server (no timing asserted)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from slipstream.bench.loadgen import (
    LoadResult,
    LoadSpec,
    ResponseParser,
    post_request,
    run_open_loop,
    schedule,
    tag_after,
)


def test_schedule_is_fixed_in_advance() -> None:
    due = schedule(4.0, 1.0)
    assert due == [0.0, 0.25, 0.5, 0.75]
    assert len(schedule(5_000.0, 2.0)) == 10_000
    assert schedule(1_000.0, 0.0) == []


@pytest.mark.parametrize(("rate", "seconds"), [(0.0, 1.0), (-1.0, 1.0), (10.0, -1.0)])
def test_schedule_refuses_nonsense(rate: float, seconds: float) -> None:
    with pytest.raises(ValueError, match="rate must be > 0"):
        schedule(rate, seconds)


def _response(body: bytes, status: str = "200 OK") -> bytes:
    return f"HTTP/1.1 {status}\r\ncontent-length: {len(body)}\r\ncontent-type: application/json\r\n\r\n".encode() + body


def test_parser_joins_a_response_split_anywhere() -> None:
    data = _response(b'{"a":1}')
    for cut in range(1, len(data)):
        parser = ResponseParser()
        assert parser.feed(data[:cut]) == []
        assert parser.feed(data[cut:]) == [(200, b'{"a":1}')]


def test_parser_splits_responses_that_arrive_together() -> None:
    parser = ResponseParser()
    got = parser.feed(_response(b"one") + _response(b"", "503 Service Unavailable") + _response(b"thr"))
    assert got == [(200, b"one"), (503, b""), (200, b"thr")]
    assert parser.feed(b"") == []


@pytest.mark.parametrize(
    ("head", "error"),
    [
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n", "transfer-encoding"),
        (b"HTTP/1.1 200 OK\r\nx: y\r\n\r\n", "without Content-Length"),
        (b"SMTP 220 hello\r\ncontent-length: 0\r\n\r\n", "status line"),
    ],
)
def test_parser_refuses_what_it_cannot_frame(head: bytes, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        ResponseParser().feed(head)


def test_tag_after_reads_a_json_string_value() -> None:
    body = b'{"score":0.1,"model":{"name":"fraud","version":"12"},"x":1}'
    assert tag_after(body, b'"version":"') == "12"
    assert tag_after(body, b'"missing":"') == ""
    assert tag_after(b'{"version":"unterminated', b'"version":"') == ""


def test_post_request_is_keep_alive_with_its_length() -> None:
    raw = post_request("h", "/p", b'{"x":1}')
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"POST /p HTTP/1.1\r\n")
    assert b"Content-Length: 7" in head and b"Connection: keep-alive" in head
    assert body == b'{"x":1}'


def test_result_counts_errors_and_successful_throughput() -> None:
    result = LoadResult(rate=10.0, seconds=1.0, start=100.0)
    result.due = [100.0, 100.1, 100.2, 100.3]
    result.latency_ms = [1.0, 2.0, 3.0, 4.0]
    result.status = [200, 200, 503, 200]
    result.tags = ["", "", "", ""]
    result.failures = 1
    result.last_done = 102.0
    assert result.errors == 2
    assert result.answered == 4
    assert result.ok_latencies() == [1.0, 2.0, 4.0]
    assert result.achieved_rps == pytest.approx(1.5)


@pytest.fixture
def echo_server() -> Iterator[int]:
    """A keep-alive HTTP server answering every request with the version of the request's index (status 200)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while not stop.is_set():
                data = conn.recv(65536)
                if not data:
                    return
                buffer += data
                while b"\r\n\r\n" in buffer:
                    head, _, rest = buffer.partition(b"\r\n\r\n")
                    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                    body, buffer = rest[:length], rest[length:]
                    conn.sendall(_response(b'{"model":{"version":"' + body + b'"}}'))

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield port
    stop.set()
    thread.join()
    listener.close()


def test_open_loop_run_sends_every_request_once(echo_server: int) -> None:
    requests = [post_request("127.0.0.1", "/", str(i).encode()) for i in range(3)]
    starts: list[float] = []
    spec = LoadSpec(
        "127.0.0.1", echo_server, requests, rate=200.0, seconds=0.25, connections=2, tag_marker=b'"version":"'
    )
    result = run_open_loop(spec, on_start=starts.append)
    assert starts == [result.start]
    assert result.sent == result.answered == 50
    assert result.errors == 0
    assert sorted(result.due) == [result.start + i / 200.0 for i in range(50)]
    assert all(lat >= 0 for lat in result.latency_ms)
    assert set(result.tags) == {"0", "1", "2"}  # requests are cycled
