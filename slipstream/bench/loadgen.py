"""An open-loop HTTP/1.1 load generator for the scorer benchmarks: standard library only, one thread, no asyncio.

Open loop: request ``i`` is *due* at ``start + i / rate`` whatever happened to the earlier ones, and its latency is
measured from that due time to the last byte of its response. A slow response therefore delays nothing but itself
and is never hidden (no coordinated omission): when every connection is busy, due requests wait in a backlog and
that wait counts.

Why not asyncio: its timers (epoll, libuv) have millisecond resolution, so a 200 µs send schedule would be quantised
to 1 ms and the quantisation would be measured as server latency. ``select.select`` takes a microsecond timeout, so
one thread waits for either the next due time or a response, whichever comes first. Connections are keep-alive,
with ``TCP_NODELAY``, opened before the clock starts.

:func:`run_open_loop` runs in the calling process; :func:`spawn_open_loop` runs it in a fresh process so the
caller's own work (promoting a model mid-run, say) does not steal the generator's time. Both use the system-wide
monotonic clock (``time.perf_counter``), so times can be compared across the two processes.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import select
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from slipstream.bench.exceptions import BenchConfigError, LoadGeneratorError, ResponseFormatError

Clock = Callable[[], float]


def schedule(rate: float, seconds: float) -> list[float]:
    """Due times (seconds after the start) of an open-loop run: ``i / rate`` for ``0 <= i < round(rate*seconds)``."""
    if rate <= 0 or seconds < 0:
        msg = f"rate must be > 0 and seconds >= 0, got rate={rate!r}, seconds={seconds!r}"
        raise BenchConfigError(msg)
    return [i / rate for i in range(round(rate * seconds))]


def sleep_until(deadline: float, clock: Clock = time.perf_counter) -> None:
    """Sleep until ``clock() >= deadline``; ``time.sleep`` has ~0.1 ms precision on Linux, good enough for pacing."""
    while (delay := deadline - clock()) > 0:
        time.sleep(delay)


def post_request(host: str, path: str, body: bytes, token: str | None = None) -> bytes:
    """One keep-alive HTTP/1.1 POST of a JSON body, ready to send; with ``token``, authenticated as a bearer."""
    auth = f"Authorization: Bearer {token}\r\n" if token is not None else ""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{auth}"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode("ascii") + body


class ResponseParser:
    """Splits a connection's byte stream into HTTP/1.1 responses (status, body); needs ``Content-Length``."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buffer += data
        out: list[tuple[int, bytes]] = []
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return out
            head = bytes(self._buffer[:end]).decode("latin-1")
            lines = head.split("\r\n")
            parts = lines[0].split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
                msg = f"not an HTTP/1.x status line: {lines[0]!r}"
                raise ResponseFormatError(msg)
            length = None
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value.strip())
                elif name == "transfer-encoding" and value.strip().lower() != "identity":
                    msg = f"unsupported transfer-encoding {value.strip()!r} (the scorer sends Content-Length)"
                    raise ResponseFormatError(msg)
            if length is None:
                msg = f"response without Content-Length: {head[:200]!r}"
                raise ResponseFormatError(msg)
            total = end + 4 + length
            if len(self._buffer) < total:
                return out
            out.append((int(parts[1]), bytes(self._buffer[end + 4 : total])))
            del self._buffer[:total]


def tag_after(body: bytes, marker: bytes) -> str:
    """The JSON string value following ``marker`` (e.g. ``b'"version":"'``) in ``body``; ``""`` when absent."""
    at = body.find(marker)
    if at < 0:
        return ""
    start = at + len(marker)
    end = body.find(b'"', start)
    return body[start:end].decode() if end >= 0 else ""


@dataclass(slots=True)
class LoadResult:
    """One open-loop run. Per answered request: due time, latency from it, HTTP status and tag (absolute times)."""

    rate: float
    seconds: float
    start: float
    sent: int = 0
    due: list[float] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    status: list[int] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    send_lag_ms: list[float] = field(default_factory=list)  # per answered request: actual send - due (client lag)
    failures: int = 0  # requests that never got a response: connection errors, or still open at the drain timeout
    last_done: float = 0.0
    max_backlog: int = 0

    @property
    def answered(self) -> int:
        return len(self.latency_ms)

    @property
    def errors(self) -> int:
        """Requests that failed: no response, or a status other than 2xx."""
        return self.failures + sum(1 for s in self.status if not 200 <= s < 300)

    @property
    def achieved_rps(self) -> float:
        """Successful responses per second, from the first due time to the last response."""
        span = self.last_done - self.start
        ok = self.answered - sum(1 for s in self.status if not 200 <= s < 300)
        return ok / span if span > 0 else 0.0

    def ok_latencies(self) -> list[float]:
        return [lat for lat, s in zip(self.latency_ms, self.status, strict=True) if 200 <= s < 300]


@dataclass(slots=True)
class _Conn:
    sock: socket.socket
    parser: ResponseParser = field(default_factory=ResponseParser)
    inflight: int = -1


def _connect(host: str, port: int, timeout_s: float) -> _Conn:
    sock = socket.create_connection((host, port), timeout=timeout_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(None)  # blocking: recv is only called when select says there is data
    return _Conn(sock)


@dataclass(frozen=True, slots=True)
class LoadSpec:
    host: str
    port: int
    requests: Sequence[bytes]  # cycled: request i is requests[i % len(requests)]
    rate: float
    seconds: float
    connections: int = 8
    start_at: float | None = None  # absolute perf_counter time of the first due request; None: 0.2 s from now
    drain_s: float = 2.0
    tag_marker: bytes = b""


def run_open_loop(
    spec: LoadSpec, clock: Clock = time.perf_counter, on_start: Callable[[float], None] | None = None
) -> LoadResult:
    """Send ``spec.requests`` on the open-loop schedule of ``spec.rate`` over ``spec.connections`` connections.

    ``on_start`` is told the first due time once the connections are open.
    """
    if not spec.requests:
        msg = "no requests to send"
        raise BenchConfigError(msg)
    conns = [_connect(spec.host, spec.port, 5.0) for _ in range(max(1, spec.connections))]
    offsets = schedule(spec.rate, spec.seconds)
    start = spec.start_at if spec.start_at is not None else clock() + 0.2
    due = [start + t for t in offsets]
    result = LoadResult(spec.rate, spec.seconds, start)
    if on_start is not None:
        on_start(start)
    idle: list[_Conn] = list(conns)
    busy: dict[socket.socket, _Conn] = {}
    backlog: deque[int] = deque()
    n, nxt = len(due), 0
    sent_at = [0.0] * n
    requests, count = spec.requests, len(spec.requests)
    end = (due[-1] if due else start) + spec.drain_s
    frozen = gc.isenabled()
    gc.disable()  # a collection in the middle of a run would be measured as server latency
    try:
        sleep_until(start - 0.001, clock)
        while True:
            now = clock()
            while nxt < n and due[nxt] <= now:
                backlog.append(nxt)
                nxt += 1
            while backlog and idle:
                conn = idle.pop()
                i = backlog.popleft()
                try:
                    conn.sock.sendall(requests[i % count])
                except OSError:
                    result.failures += 1
                    _drop(conn, conns)
                    continue
                conn.inflight = i
                sent_at[i] = clock()
                busy[conn.sock] = conn
                result.sent += 1
            result.max_backlog = max(result.max_backlog, len(backlog))
            if nxt >= n and not backlog and not busy:
                break
            if now > end or (not idle and not busy):  # drain timeout, or every connection is gone
                result.failures += len(busy) + len(backlog) + (n - nxt)
                break
            timeout = (due[nxt] - now) if nxt < n else (end - now)
            if not busy:
                sleep_until(now + max(timeout, 0.0), clock)
                continue
            readable, _, _ = select.select(list(busy), [], [], max(timeout, 0.0))
            done = clock()
            for sock in readable:
                conn = busy[sock]
                try:
                    data = sock.recv(65536)
                    if not data:
                        raise ConnectionResetError("server closed the connection")  # noqa: EM101
                    responses = conn.parser.feed(data)
                except (OSError, ValueError):  # ResponseFormatError, or a Content-Length int() cannot read
                    result.failures += 1
                    del busy[sock]
                    _drop(conn, conns)
                    continue
                for status, body in responses:
                    i = conn.inflight
                    result.due.append(due[i])
                    result.latency_ms.append((done - due[i]) * 1000.0)
                    result.status.append(status)
                    result.tags.append(tag_after(body, spec.tag_marker) if spec.tag_marker else "")
                    result.send_lag_ms.append((sent_at[i] - due[i]) * 1000.0)
                    result.last_done = done
                    del busy[sock]
                    conn.inflight = -1
                    idle.append(conn)
    finally:
        if frozen:
            gc.enable()
        for conn in conns:
            conn.sock.close()
    return result


def _drop(conn: _Conn, conns: list[_Conn]) -> None:
    conn.sock.close()
    if conn in conns:
        conns.remove(conn)


def fine_timers() -> None:
    """Ask Linux for 1 µs timer slack in this process (default 50 µs): sleeps then end when asked. Best effort."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(29, 1000, 0, 0, 0)  # PR_SET_TIMERSLACK, in ns
    except (OSError, AttributeError):
        pass


def _child(spec: LoadSpec, pipe: Any) -> None:
    fine_timers()
    try:
        pipe.send(run_open_loop(spec, on_start=lambda start: pipe.send(("start", start))))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        pipe.send(exc)
    finally:
        pipe.close()


class LoadProcess:
    """:func:`run_open_loop` in a fresh process (spawned: nothing of this process's state or threads is shared).

    Its ``perf_counter`` is the same clock as the caller's, so :meth:`started` can be used to act mid-run.
    """

    def __init__(self, spec: LoadSpec) -> None:
        ctx = mp.get_context("spawn")
        self._pipe, child = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=_child, args=(spec, child), name="loadgen", daemon=True)
        self._proc.start()
        child.close()
        self._start: float | None = None

    def _recv(self) -> Any:
        try:
            got = self._pipe.recv()
        except EOFError as exc:
            self._proc.join(10)
            msg = f"the load generator process exited with code {self._proc.exitcode} before reporting"
            raise LoadGeneratorError(msg) from exc
        if isinstance(got, BaseException):
            self._proc.join(10)
            raise got
        return got

    def started(self) -> float:
        """Block until the connections are open; the first request's due time."""
        if self._start is None:
            got = self._recv()
            if not (isinstance(got, tuple) and got[0] == "start"):
                msg = f"the load generator sent {got!r} before its start"
                raise LoadGeneratorError(msg)
            self._start = float(got[1])
        return self._start

    def result(self) -> LoadResult:
        self.started()
        got = self._recv()
        self._proc.join(10)
        if not isinstance(got, LoadResult):
            msg = f"the load generator sent {type(got).__name__}, not a LoadResult"
            raise LoadGeneratorError(msg)
        return got


def spawn_open_loop(spec: LoadSpec) -> LoadResult:
    """:func:`run_open_loop` in a fresh process, waiting for its result."""
    return LoadProcess(spec).result()


__all__ = [
    "LoadProcess",
    "fine_timers",
    "LoadResult",
    "LoadSpec",
    "ResponseParser",
    "post_request",
    "run_open_loop",
    "schedule",
    "sleep_until",
    "spawn_open_loop",
    "tag_after",
]
