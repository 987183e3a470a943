"""Bad input at the HTTP edge, fuzzed: tens of thousands of generated requests to every endpoint of a running
`slipstream serve` (its own process, real Redis and MLflow behind it, a fraud and a reco champion loaded).

Valid-shaped, edge-valued and garbage requests, mixed: malformed JSON, wrong types, ids past 64 bits, NaN and
infinities, absurd timestamps, unicode, deep nesting, bodies over the cap (declared, sent whole, or chunked), wrong
content types and methods. Each generated body goes to both JSON endpoints (to the other one it is garbage of the
right syntax) and each generated GET-side request to the three others. Never a 5xx; every 4xx a small JSON body
with a one-line detail that quotes no more than an excerpt of the request; each kind of request gets the status
its kind calls for; /readyz is still ready at the end. A one-line JSON summary (counts per endpoint and status,
seconds) is printed: `pytest -s` shows it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from slipstream.app import Slipstream
from slipstream.features.definitions.fraud import FRAUD
from slipstream.models.artifacts import reference_distribution
from slipstream.models.reco import FEATURES as RECO_FEATURES
from slipstream.models.registry import ModelRegistry
from slipstream.schemas.contracts import Contracts
from slipstream.settings import load_settings
from tests.conftest import Services
from tests.integration.serving.fixtures import cli_env
from tests.integration.serving.http_server import Client, free_port

pytestmark = pytest.mark.integration

CAP = 80_000  # SLIPSTREAM_HTTP_MAX_BODY_BYTES of the server: not the default, so the test sees the setting applied
PER_ENDPOINT = 10_000  # requests to each endpoint
PER_EXAMPLE = 8  # requests to each endpoint in one hypothesis example (fewer examples: each costs ~1 ms)
CONNECTIONS = 2
MAX_INT64 = 2**63 - 1
EXCERPT = 80
JSON_PATHS = {"fraud": "/v1/fraud/score", "reco": "/v1/recommendations"}
GET_PATHS = {"healthz": "/healthz", "readyz": "/readyz", "metrics": "/metrics"}
TOO_LARGE = frozenset({413})


# ------------------------------------------------------------------------------------------------ the server


def _register(registry: ModelRegistry, name: str, names: list[str], objective: str) -> None:
    rng = np.random.default_rng(7)
    x = rng.gamma(2.0, 20.0, (600, len(names)))
    params: dict[str, Any] = {"objective": objective, "num_leaves": 7, "verbose": -1, "num_threads": 1, "seed": 7}
    if objective == "binary":
        data = lgb.Dataset(x, (x[:, 0] > 40).astype(int), feature_name=names)
    else:
        data = lgb.Dataset(x, rng.integers(0, 3, 600), group=[10] * 60, feature_name=names)
    booster = lgb.train(params, data, num_boost_round=8)
    scores = booster.predict(x)
    registry.register(
        name,
        booster,
        names,
        threshold=0.5 if objective == "binary" else 0.0,
        reference=reference_distribution(x, scores, names, score_range=(0.0, 1.0) if objective == "binary" else None),
        metrics={"score": 0.5},
        params={"num_leaves": 7},
        data_window=("2024-01-01", "2024-02-01"),
        data_hash=f"fuzz-{uuid.uuid4().hex[:6]}",
        sample=x[:200],
    )
    registry.promote(name, "1")


@pytest.fixture
def server(services: Services, contracts: Contracts, tmp_path: Path) -> Iterator[int]:
    """`slipstream serve` on a free port with a tiny fraud and reco champion and an empty feature namespace in the
    real Redis; yields the port once /readyz says ready."""
    project = f"t{uuid.uuid4().hex[:8]}"
    settings_ = load_settings(
        kafka_bootstrap_servers=services.bootstrap_servers,
        redis_url=services.redis_url,
        state_dir=tmp_path,
        feast_project=project,
        topic_prefix=contracts.catalog.prefix,
    )
    app = Slipstream(settings_)
    _register(app.model_registry, "fraud", list(FRAUD.model_input), "binary")
    _register(app.model_registry, "reco", list(RECO_FEATURES), "lambdarank")
    env = {**os.environ, **cli_env(services, app, project), "SLIPSTREAM_HTTP_MAX_BODY_BYTES": str(CAP)}
    port = free_port()
    cmd = [sys.executable, "-m", "slipstream", "serve", "--port", str(port), "--log-level", "warning"]
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline, ready = time.monotonic() + 90, False
        while not ready:
            assert time.monotonic() < deadline, f"serve never became ready:\n{log_path.read_text()}"
            assert proc.poll() is None, log_path.read_text()
            try:
                client = Client(port)
                status, body = client.request("GET", "/readyz")
                client.close()
                ready = status == 200 and body["models"]["reco"]["loaded"]
            except OSError:
                pass
            if not ready:
                time.sleep(0.2)
        yield port
        assert "Traceback" not in log_path.read_text(), log_path.read_text()[-5000:]
    finally:
        proc.terminate()
        proc.wait(30)


# ------------------------------------------------------------------------------------------------ requests


@dataclass(frozen=True, repr=False)
class Req:
    """One generated request, for any endpoint: how it is sent, and the statuses its kind allows at ``home`` (the
    endpoint it was shaped for: "fraud", "reco", or "get" for the three GET endpoints)."""

    home: str
    kind: str
    method: str
    body: bytes | None = None
    content_type: str | None = "application/json"
    chunked: bool = False
    declared: int | None = None  # a Content-Length sent with only ``body`` (its start) behind it
    expect_continue: bool = False  # "Expect: 100-continue": the body waits for the server's go (ours does not)
    query: str = ""
    expect: frozenset[int] = frozenset({200})

    def expect_at(self, endpoint: str) -> frozenset[int]:
        """At the other JSON endpoint a valid-shaped body lacks every required field: 422."""
        if endpoint in JSON_PATHS and endpoint != self.home and self.kind.split(":")[0] in ("valid", "edge"):
            return frozenset({422})
        return self.expect

    def reframed(self) -> Req:
        """The same request framed the other way: chunked or with a Content-Length (a declared length over the cap
        with "Expect: 100-continue")."""
        if self.declared is not None:
            return replace(self, expect_continue=not self.expect_continue)
        return replace(self, chunked=not self.chunked)

    def __repr__(self) -> str:  # short: the failure message shows it
        body = self.body if self.body is None or len(self.body) <= 300 else self.body[:300] + b"..."
        what = f"{self.method} ?{self.query[:60]} [{self.home}:{self.kind}] {self.content_type!r}"
        framing = f"chunked={self.chunked} declared={self.declared} expect_continue={self.expect_continue}"
        return f"Req({what} {framing} {len(self.body or b'')} bytes {body!r})"


def _dumps(value: Any) -> bytes:
    """JSON as any client may send it: big ints, NaN and Infinity literals, unicode unescaped."""
    return json.dumps(value, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")


ids = st.integers(0, MAX_INT64)
amounts = st.floats(0, 1e15, allow_nan=False) | st.sampled_from([0, 0.0, 1, 5e-324, 1e15])
_FIRST_S, _LAST_S = 946_857_600, 4_102_185_600  # 2000-01-03 and 2099-12-30: inside the range at any offset


def _iso(seconds: int, micros: int, offset_min: int) -> str:
    zone = timezone(timedelta(minutes=offset_min))
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=micros).astimezone(zone).isoformat()


# Cheap draws on purpose (st.datetimes with st.timezones costs ~4 ms an example): tens of thousands are sent.
aware_times = st.builds(_iso, st.integers(_FIRST_S, _LAST_S), st.integers(0, 999_999), st.integers(-1439, 1439))
texts = st.text(max_size=12) | st.text(st.characters(codec="utf-8"), max_size=40)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-(2**200), 2**200)
    | st.floats()
    | texts
    | st.sampled_from(["x" * 300, "é" * 100, "\u2028\n\t\x00", "\U0001f600" * 30])
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)
bad_ids = st.sampled_from([-1, 2**63, 2**64, 10**30, -(2**63) - 1, 10**400]) | st.integers(max_value=-1)
bad_amounts = st.sampled_from([-0.01, -1, -1e308]) | st.floats(max_value=-1e-9, allow_infinity=False)
bad_times = st.sampled_from(
    [
        "1999-12-31T23:59:59+00:00",
        "2100-01-01T00:00:00Z",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59+00:00",
        "2024-01-01T00:00:00",  # naive
        "2024-13-45T99:00:00Z",
        "yesterday",
        "",
        10**20,
        -(10**20),
    ]
)
non_finite = st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400"])


def _fraud_fields() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"transaction_id": ids, "customer_id": ids, "terminal_id": ids, "amount": amounts},
        optional={"event_time": aware_times},
    )


def _reco_fields() -> st.SearchStrategy[dict[str, Any]]:
    candidate = st.fixed_dictionaries(
        {"item_id": ids, "category_id": st.integers(0, 2**31 - 1)},
        optional={"retrieval_views_7d": amounts},
    )
    return st.fixed_dictionaries(
        {
            "user_id": ids,
            "candidates": st.lists(candidate, min_size=1, max_size=8, unique_by=lambda c: c["item_id"]),
        },
        optional={
            "request_id": st.text(st.characters(codec="utf-8"), min_size=1, max_size=24)
            | st.sampled_from(["r" * 200, "é" * 200, "\U0001f600" * 200]),
            "top_k": st.integers(1, 2**31 - 1),
            "event_time": aware_times,
            "include_features": st.booleans(),
        },
    )


@st.composite
def _edge_body(draw: st.DrawFn, home: str) -> tuple[bytes, str]:
    """A valid-shaped body with one value out of range: its kind, a 422."""
    fields = draw(_fraud_fields() if home == "fraud" else _reco_fields())
    if home == "fraud":
        name = draw(st.sampled_from(["transaction_id", "customer_id", "terminal_id", "amount", "event_time", "extra"]))
    else:
        name = draw(st.sampled_from(["user_id", "item_id", "category_id", "views", "top_k", "event_time", "many"]))
    target: dict[str, Any] = fields
    if name in ("item_id", "category_id", "views"):
        target = fields["candidates"][0]
        name = "retrieval_views_7d" if name == "views" else name
    if name == "amount" or name == "retrieval_views_7d":
        if draw(st.booleans()):  # a literal JSON itself cannot hold: NaN, Infinity, a float past double
            target[name] = "__NONFINITE__"
            return _dumps(fields).replace(b'"__NONFINITE__"', draw(non_finite)), name
        target[name] = draw(bad_amounts)
    elif name == "event_time":
        target[name] = draw(bad_times)
    elif name == "extra":
        target[draw(st.text(min_size=1, max_size=300).filter(lambda k: k not in fields))] = draw(json_values)
    elif name == "top_k":
        target[name] = draw(st.sampled_from([0, -1, 2**31, 2**63, 10**30]))
    elif name == "many":  # one candidate past the limit (duplicates too: the count is checked first)
        target["candidates"] = [{"item_id": 0, "category_id": 0}] * 2001
    elif name == "category_id":
        target[name] = draw(st.sampled_from([-1, 2**31, 2**63]))
    else:
        target[name] = draw(bad_ids)
    return _dumps(fields), name


@st.composite
def _malformed(draw: st.DrawFn) -> bytes:
    """Bytes that are not JSON at all."""
    valid = _dumps(draw(json_values | _fraud_fields()))
    how = draw(st.sampled_from(["cut", "binary", "deep", "digits", "surrogate", "empty", "trailing"]))
    if how == "cut" and len(valid) > 1:
        return valid[: draw(st.integers(1, len(valid) - 1))] + (b"" if valid[0] in b"{[" else b"{")
    if how == "binary":  # not UTF-8, nor a BOM another decoder would take
        return b"\xff\xff" + draw(st.binary(max_size=200))
    if how == "deep":
        depth = draw(st.integers(300, 30_000))
        return b"[" * depth + b"]" * (depth - 1)  # one bracket short
    if how == "digits":  # an integer too long for any parser, unterminated object
        return b'{"transaction_id": ' + b"9" * draw(st.integers(4400, 60_000))
    if how == "surrogate":
        return b'{"request_id": "\\ud800' + b"x" * draw(st.integers(0, 50))
    if how == "trailing":
        return valid + b" ,"
    return b""


def _json_requests(home: str) -> st.SearchStrategy[Req]:
    fields = _fraud_fields() if home == "fraud" else _reco_fields()
    ok = frozenset({200}) if home == "fraud" else frozenset({200, 422})  # reco: a repeated item is a 422
    return st.one_of(
        fields.map(lambda f: Req(home, "valid", "POST", _dumps(f), expect=ok)),
        fields.map(lambda f: Req(home, "valid", "POST", _dumps(f), "application/json; charset=utf-8", expect=ok)),
        _edge_body(home).map(lambda b: Req(home, f"edge:{b[1]}", "POST", b[0], expect=frozenset({422}))),
        json_values.map(lambda v: Req(home, "garbage", "POST", _dumps(v), expect=frozenset({400, 422}))),
        st.dictionaries(
            st.sampled_from(["transaction_id", "amount", "user_id", "candidates", "event_time", "top_k"]) | st.text(),
            json_values,
            max_size=6,
        ).map(lambda v: Req(home, "mixed", "POST", _dumps(v), expect=frozenset({200, 422}))),
        _malformed().map(lambda b: Req(home, "malformed", "POST", b, expect=frozenset({400}))),
        st.builds(
            lambda size, chunked: Req(
                home, "oversized", "POST", b"[" + b"1," * (size // 2) + b"1]", chunked=chunked, expect=TOO_LARGE
            ),
            st.integers(CAP, 3 * CAP),
            st.booleans(),
        ),
        st.integers(CAP + 1, 10**12).map(
            lambda n: Req(home, "declared", "POST", b'{"user_id": ', declared=n, expect=TOO_LARGE)
        ),
        st.builds(
            lambda ctype, f: Req(home, "media", "POST", _dumps(f), ctype, expect=frozenset({415})),
            st.sampled_from(["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"])
            | st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=300).filter(
                lambda t: "json" not in t.lower()
            ),
            fields,
        ),
        st.builds(
            lambda method, f: Req(home, "method", method, _dumps(f), expect=frozenset({405})),
            st.sampled_from(["GET", "PUT", "DELETE", "PATCH", "OPTIONS"]),
            fields,
        ),
    )


def _get_requests() -> st.SearchStrategy[Req]:
    query = st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="#%"), max_size=60)
    # The first branch is drawn most (hypothesis starts simple): a cheap one, as /metrics costs the server ~2.5 ms.
    return st.one_of(
        st.sampled_from(["POST", "PUT", "DELETE", "OPTIONS", "HEAD"]).map(
            lambda method: Req("get", "method", method, content_type=None, expect=frozenset({405}))
        ),
        st.just(Req("get", "valid", "GET", content_type=None)),
        query.map(lambda q: Req("get", "query", "GET", content_type=None, query=q)),
        json_values.map(lambda v: Req("get", "body", "GET", _dumps(v))),
        st.builds(
            lambda size, chunked: Req("get", "oversized", "GET", b"x" * size, "text/plain", chunked, expect=TOO_LARGE),
            st.integers(CAP + 1, 3 * CAP),
            st.booleans(),
        ),
        st.integers(CAP + 1, 10**12).map(
            lambda n: Req("get", "declared", "GET", b"x", "text/plain", declared=n, expect=TOO_LARGE)
        ),
        st.builds(
            lambda method, v: Req("get", "method", method, _dumps(v), expect=frozenset({405})),
            st.sampled_from(["POST", "PUT", "DELETE", "PATCH"]),
            json_values,
        ),
    )


# ------------------------------------------------------------------------------------------------ the client


@dataclass(frozen=True)
class Reply:
    status: int
    data: bytes
    content_type: str
    closed: bool  # the server closed the connection after answering
    cut_short: bool  # the server answered (and closed) before the whole body was sent


class Connection:
    """HTTP/1.1 on one keep-alive socket, opened again after the server closes it; nothing between the test and
    the bytes (a request is written exactly as described, a response read by its Content-Length)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None
        self.buffer = b""

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock, self.buffer = None, b""

    def send(self, req: Req, path: str) -> Reply:
        try:
            return self._send(req, path)
        except BaseException:
            self.close()  # a half-sent request must not poison the next one
            raise

    def _send(self, req: Req, path: str) -> Reply:
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head = [f"{req.method} {path}{'?' + req.query if req.query else ''} HTTP/1.1", "Host: 127.0.0.1"]
        body = req.body or b""
        if req.content_type is not None and (req.body is not None or req.declared is not None):
            head.append(f"Content-Type: {req.content_type}")
        if req.chunked:
            head.append("Transfer-Encoding: chunked")
            pieces = [
                b"%x\r\n%s\r\n" % (len(body[i : i + 16_384]), body[i : i + 16_384]) for i in range(0, len(body), 16_384)
            ]
            body = b"".join(pieces) + b"0\r\n\r\n"
        elif req.declared is not None or req.body is not None:
            head.append(f"Content-Length: {req.declared or len(body)}")
        if req.expect_continue:
            head.append("Expect: 100-continue")
        cut_short = False
        try:
            self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        except (BrokenPipeError, ConnectionResetError):
            cut_short = True  # the server answered before the body was all sent (a 413) and closed: read it
        status, headers, data = self._response(with_body=req.method != "HEAD")
        closed = headers.get("connection", "").lower() == "close"
        if closed:
            self.close()
        return Reply(status, data, headers.get("content-type", ""), closed, cut_short)

    def _read(self) -> bytes:
        assert self.sock is not None
        chunk = self.sock.recv(262_144)
        if not chunk:
            msg = "the server closed the connection without an answer"
            raise ConnectionError(msg)
        return chunk

    def _response(self, *, with_body: bool) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._read()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0")) if with_body else 0
        while len(self.buffer) < length:
            self.buffer += self._read()
        data, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, headers, data


@dataclass
class Tally:
    by_endpoint: Counter[str] = field(default_factory=Counter)
    by_status: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    by_kind: Counter[str] = field(default_factory=Counter)
    server_errors: int = 0
    reconnects: int = 0
    cut_short: Counter[str] = field(default_factory=Counter)  # sending stopped by the server's early answer


class Pipeline:
    """Requests sent on a few connections at once while the next ones are generated; each answer checked as it
    comes back. A failure is recorded with its request and endpoint (replayable alone: requests are independent)
    rather than raised into hypothesis, which would blame the example being generated at the time."""

    def __init__(self, port: int, connections: int) -> None:
        self.pool = ThreadPoolExecutor(connections)
        self.local = threading.local()
        self.port = port
        self.tally = Tally()
        self.connections: list[Connection] = []
        self.in_flight: deque[tuple[str, Req, Future[Reply]]] = deque()
        self.failures: list[str] = []

    def _send(self, endpoint: str, req: Req) -> Reply:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = Connection(self.port)
            self.connections.append(conn)
        return conn.send(req, {**JSON_PATHS, **GET_PATHS}[endpoint])

    def submit(self, sends: Sequence[tuple[str, Req]], window: int) -> None:
        self.in_flight.extend((e, req, self.pool.submit(self._send, e, req)) for e, req in sends)
        while len(self.in_flight) > window or (self.in_flight and self.in_flight[0][2].done()):
            self._settle(*self.in_flight.popleft())

    def _settle(self, endpoint: str, req: Req, future: Future[Reply]) -> None:
        tally = self.tally
        tally.by_endpoint[endpoint] += 1
        tally.by_kind[req.kind.split(":")[0]] += 1
        try:
            reply = future.result()
            tally.by_status[endpoint][reply.status] += 1
            tally.server_errors += reply.status >= 500
            tally.reconnects += reply.closed
            tally.cut_short[req.kind] += reply.cut_short
            _check(endpoint, req, reply)
        except (AssertionError, OSError, ValueError) as exc:
            self.failures.append(f"{type(exc).__name__} at {endpoint}: {exc}\n    request: {req!r}")

    def finish(self) -> None:
        while self.in_flight:
            self._settle(*self.in_flight.popleft())
        self.pool.shutdown()
        for conn in self.connections:
            conn.close()


def _check(endpoint: str, req: Req, reply: Reply) -> None:
    status, data = reply.status, reply.data
    expect = req.expect_at(endpoint)
    assert status < 500, f"{status}: {data[:500]!r}"
    assert status in expect, f"{status} (expected {sorted(expect)}): {data[:500]!r}"
    if status < 400 or req.method == "HEAD":  # no body to a HEAD
        return
    assert reply.content_type.startswith("application/json"), f"{status} as {reply.content_type!r}"
    assert len(data) <= 8192, f"a {len(data)}-byte error body"
    body = json.loads(data)
    assert isinstance(body, dict) and isinstance(body.get("error"), str), body
    detail = body.get("detail")
    assert isinstance(detail, str) and 0 < len(detail) <= 400 and "\n" not in detail, body
    for problem in body.get("problems", []):
        shown = problem.get("input")
        assert not isinstance(shown, str) or len(shown) <= EXCERPT, problem
    sent, answer = (req.body or b"").decode("utf-8", "replace"), data.decode("utf-8", "replace")
    for start in (0, len(sent) // 2, len(sent) - EXCERPT - 10):  # no long stretch of the request comes back
        window = sent[max(start, 0) : max(start, 0) + EXCERPT + 10]
        assert len(window) <= EXCERPT or window not in answer, f"the error echoes {window!r}"


def test_no_client_input_gets_a_5xx(server: int) -> None:
    pipeline = Pipeline(server, CONNECTIONS)
    # Generating is the client's main cost: each JSON body goes to both JSON endpoints, framed both ways; each
    # GET-side request to the three GET endpoints.
    batch = st.tuples(
        st.tuples(*[_json_requests("fraud"), _json_requests("reco")] * (PER_EXAMPLE // 4)),
        st.tuples(*[_get_requests()] * PER_EXAMPLE),
    )

    @settings(
        max_examples=PER_ENDPOINT // PER_EXAMPLE,
        deadline=None,
        database=None,
        phases=(Phase.generate,),  # failures are recorded, not raised (see Pipeline): nothing to shrink
        suppress_health_check=list(HealthCheck),
    )
    @given(batch)
    def fuzz(requests: tuple[tuple[Req, ...], tuple[Req, ...]]) -> None:
        bodies, gets = requests
        sends = [(e, f) for r in bodies for f in (r, r.reframed()) for e in JSON_PATHS]
        sends += [(e, r) for r in gets for e in GET_PATHS]
        pipeline.submit(sends, window=4 * len(sends))

    started = time.monotonic()
    try:
        fuzz()
    finally:
        pipeline.finish()
    seconds = time.monotonic() - started

    client = Client(server)
    status, ready = client.request("GET", "/readyz")
    client.close()
    tally = pipeline.tally
    summary = {
        "fuzz_requests": sum(tally.by_endpoint.values()),
        "per_endpoint": dict(tally.by_endpoint),
        "statuses": {e: {str(s): n for s, n in sorted(c.items())} for e, c in tally.by_status.items()},
        "kinds": dict(tally.by_kind),
        "5xx": tally.server_errors,
        "reconnects": tally.reconnects,
        "sends_cut_short": {k: n for k, n in tally.cut_short.items() if n},
        "seconds": round(seconds, 1),
        "cap_bytes": CAP,
    }
    print(json.dumps(summary))
    assert not pipeline.failures, f"{len(pipeline.failures)} failures, the first:\n" + "\n".join(pipeline.failures[:5])
    assert status == 200 and ready["ready"] is True, ready
    assert tally.server_errors == 0
    assert min(tally.by_endpoint[e] for e in [*JSON_PATHS, *GET_PATHS]) >= PER_ENDPOINT, tally.by_endpoint
