"""Bearer-token authentication of the HTTP scorer, driven through the whole ASGI app (the fast path in front of
FastAPI) message by message, with a scorer stub that answers: 401 without, with a wrong or malformed token, the same
401 every time; 200 with each configured token on both endpoints; the probes and /metrics open; open, and logged so,
without tokens."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from slipstream.serving.auth import BODY, BearerAuth, is_protected
from slipstream.serving.base import FraudScore, RankedItem, Recommendation
from slipstream.serving.exceptions import ServingError
from slipstream.serving.http import FraudFastPath, create_app
from slipstream.serving.metrics import ScorerMetrics

TOKENS = ("old-token-0123456789abcdef", "new-token-fedcba9876543210")
FRAUD = b'{"transaction_id": 7, "customer_id": 1, "terminal_id": 2, "amount": 10.5}'
RECO = b'{"user_id": 3, "candidates": [{"item_id": 1, "category_id": 1}, {"item_id": 2, "category_id": 1}]}'


class _Fraud:
    def score_batch(self, records: list[dict[str, Any]]) -> list[FraudScore]:
        return [
            FraudScore(str(r["transaction_id"]), 1, 2, r["event_time"], 0.25, False, 0.5, "fraud", "3", {}, (), {})
            for r in records
        ]


class _Reco:
    def rank(self, request: dict[str, Any]) -> Recommendation:
        items = tuple(RankedItem(c["item_id"], 1.0 / (i + 1), i + 1, {}) for i, c in enumerate(request["candidates"]))
        return Recommendation("r-1", request["user_id"], request["event_time"], "reco", "1", items, None, {})


class _Service:
    """The parts of a ScoringService the endpoints touch, scoring without Redis or a model."""

    def __init__(self) -> None:
        self.metrics = ScorerMetrics()
        self.fraud = _Fraud()
        self.reco = _Reco()

    def observe_fraud(self, path: str, scores: list[FraudScore]) -> None:
        self.metrics.requests.labels(path, "fraud", "ok").inc(len(scores))

    def readiness(self) -> dict[str, Any]:
        return {"ready": True, "redis": True, "models": {}}


class _Answer:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.receives = 0

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.sent[0]["headers"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent[1:])

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


def _app(tokens: tuple[str, ...] | None = TOKENS, service: _Service | None = None) -> FraudFastPath:
    auth = BearerAuth(SecretStr(t) for t in tokens) if tokens else None
    return create_app(service or _Service(), manage_lifecycle=False, auth=auth)  # type: ignore[arg-type]


def _send(
    app: FraudFastPath, method: str, path: str, body: bytes = b"", headers: list[tuple[str, str]] | None = None
) -> _Answer:
    answer = _Answer()
    given = [("content-type", "application/json"), ("content-length", str(len(body))), *(headers or [])]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in given],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }

    async def receive() -> dict[str, Any]:
        answer.receives += 1
        if answer.receives == 1:
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        answer.sent.append(message)

    asyncio.run(app(scope, receive, send))
    return answer


def _bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def _assert_refused(answer: _Answer) -> None:
    assert answer.status == 401
    assert answer.headers[b"www-authenticate"] == b'Bearer realm="slipstream"'
    assert answer.headers[b"connection"] == b"close"
    assert answer.json == BODY == {"error": "unauthorized", "detail": "a valid bearer token is required"}
    assert answer.receives == 0  # the body was never read


@pytest.mark.parametrize(
    "headers",
    [
        [],
        _bearer("wrong-token-0123456789abcdef"),
        _bearer(TOKENS[0][:-1]),  # a prefix of a real token
        _bearer(TOKENS[0] + "x"),
        _bearer(""),
        [("authorization", "Bearer")],
        [("authorization", f"Basic {TOKENS[0]}")],
        [("authorization", TOKENS[0])],  # no scheme
        [("x-api-key", TOKENS[0])],
        [*_bearer(TOKENS[0]), *_bearer("wrong-token-0123456789abcdef")],  # two credentials: ambiguous
        [*_bearer(TOKENS[0]), *_bearer(TOKENS[1])],
    ],
)
def test_a_request_without_an_accepted_token_gets_the_same_401(headers: list[tuple[str, str]]) -> None:
    service = _Service()
    app = _app(service=service)
    _assert_refused(_send(app, "POST", "/v1/fraud/score", FRAUD, headers))
    _assert_refused(_send(app, "POST", "/v1/recommendations", RECO, headers))
    for path in ("/v1/nothing-here", "/v1", "/v1/fraud/score/"):  # no route is revealed without a token
        _assert_refused(_send(app, "GET", path, headers=headers))
    samples = service.metrics.registry.get_sample_value
    for endpoint in ("fraud", "reco"):
        labels = {"path": "http", "endpoint": endpoint, "outcome": "unauthorized"}
        assert samples("slipstream_requests_total", labels) == 1.0
    assert samples("slipstream_requests_total", {"path": "http", "endpoint": "fraud", "outcome": "ok"}) is None


def test_refusal_comes_before_any_other_check() -> None:
    """Without a token nothing about the request is judged: not its size, type or JSON."""
    app = _app()
    oversized = [("content-length", str(50 << 20))]
    _assert_refused(_send(app, "POST", "/v1/fraud/score", b"x", oversized))
    _assert_refused(_send(app, "POST", "/v1/fraud/score", b"a=1", [("content-type", "text/plain")]))
    _assert_refused(_send(app, "POST", "/v1/recommendations", b"{not json"))


@pytest.mark.parametrize("token", TOKENS)
def test_each_configured_token_is_accepted_on_both_endpoints(token: str) -> None:
    app = _app()
    fraud = _send(app, "POST", "/v1/fraud/score", FRAUD, _bearer(token))
    assert fraud.status == 200, fraud.body
    assert (fraud.json["transaction_id"], fraud.json["score"]) == (7, 0.25)
    reco = _send(app, "POST", "/v1/recommendations", RECO, [("authorization", f"bearer   {token} ")])
    assert reco.status == 200, reco.body
    assert [item["item_id"] for item in reco.json["items"]] == [1, 2]
    assert b"www-authenticate" not in fraud.headers and b"connection" not in fraud.headers
    invalid = _send(app, "POST", "/v1/fraud/score", b'{"transaction_id": -1}', _bearer(token))
    assert invalid.status == 422  # past the token, a request is judged as before


def test_probes_and_metrics_stay_open() -> None:
    service = _Service()
    app = _app(service=service)
    _send(app, "POST", "/v1/fraud/score", FRAUD)  # refused: counted
    assert _send(app, "GET", "/healthz").json == {"status": "ok"}
    assert _send(app, "GET", "/readyz").status == 200
    metrics = _send(app, "GET", "/metrics")
    assert metrics.status == 200
    families = {f.name: f for f in text_string_to_metric_families(metrics.body.decode())}
    outcomes = {s.labels["outcome"]: s.value for s in families["slipstream_requests"].samples if "outcome" in s.labels}
    assert outcomes == {"unauthorized": 1.0}
    assert _send(app, "GET", "/openapi.json").status == 200  # the API's shape is no secret


def test_without_tokens_the_scorer_is_open_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="slipstream.serving.http"):
        app = _app(tokens=None)
    assert "the scorer is unauthenticated" in caplog.text and caplog.records[0].levelno == logging.WARNING
    assert _send(app, "POST", "/v1/fraud/score", FRAUD).status == 200
    assert _send(app, "POST", "/v1/fraud/score", FRAUD, _bearer("anything-0123456789abc")).status == 200
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="slipstream.serving.http"):
        _app()
    assert "requires a bearer token" in caplog.text and "2 tokens" in caplog.text
    assert not any(token in caplog.text for token in TOKENS)


def test_the_guard_keeps_no_token_in_clear() -> None:
    auth = BearerAuth([SecretStr(TOKENS[0]), TOKENS[1]])
    assert not any(token in repr(auth) or token in str(vars(auth)) for token in TOKENS)
    assert auth.allows([(b"authorization", f"Bearer {TOKENS[1]}".encode())])
    with pytest.raises(ServingError, match="at least one token"):
        BearerAuth([])
    with pytest.raises(ServingError, match="none of them empty"):
        BearerAuth([SecretStr("")])


def test_only_the_scoring_api_is_protected() -> None:
    assert all(map(is_protected, ("/v1", "/v1/", "/v1/fraud/score", "/v1/recommendations", "/v1/x/y")))
    assert not any(map(is_protected, ("/v10", "/v1x", "/healthz", "/readyz", "/metrics", "/docs", "/")))


def test_the_internal_clients_send_the_token_over_real_http() -> None:
    """The demo's probes (`HttpScorer`, `RecoClient`) and the benchmark's raw requests (`post_request`) against a
    real uvicorn serving the guarded app: accepted with the token, refused without."""
    import socket

    from slipstream.bench.loadgen import post_request
    from slipstream.demo.exceptions import DemoError
    from slipstream.demo.probe import HttpScorer
    from slipstream.demo.recommend import RecoClient
    from tests.integration.serving.http_server import running

    record = {
        "transaction_id": 7,
        "customer_id": 1,
        "terminal_id": 2,
        "amount": 10.5,
        "event_time": 1_700_000_000_000_000,
    }
    with running(_app()) as port:
        scorer = HttpScorer(port, token=SecretStr(TOKENS[1]))
        assert scorer.ready()
        assert scorer.score(record)[1]["score"] == 0.25
        scorer.close()
        reco = RecoClient(port, token=SecretStr(TOKENS[0]))
        assert [i["item_id"] for i in reco.recommend(RECO)[1]["items"]] == [1, 2]
        reco.close()
        with pytest.raises(DemoError, match="HTTP 401"):
            HttpScorer(port).score(record)
        for token, status in ((TOKENS[0], b"200"), (None, b"401")):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(post_request("127.0.0.1", "/v1/fraud/score", FRAUD, token))
                assert sock.recv(65536).split(b" ", 2)[1] == status
