"""The ASGI app at the edge, driven message by message (no server, no scorer: every request here is refused or
answered before scoring): the cap before and while reading, 400/415/422 on the fast path and the FastAPI routes
alike, FastAPI's own 404/405 in the same JSON shape, a body under the cap handed on whole."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from slipstream.serving.http import create_app
from slipstream.serving.metrics import ScorerMetrics


class _Service:
    """What the edge and the FastAPI routes touch of a ScoringService when no request gets scored."""

    def __init__(self) -> None:
        self.metrics = ScorerMetrics()
        self.reco = None

    def readiness(self) -> dict[str, Any]:
        return {"ready": True, "redis": True, "models": {}}


class _Exchange:
    """One request through the app: what it sent back, and how much of the body it asked for."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.receives = 0
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        self.receives += 1
        if self.receives <= len(self.chunks):
            more = self.receives < len(self.chunks)
            return {"type": "http.request", "body": self.chunks[self.receives - 1], "more_body": more}
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.sent[0]["headers"])

    @property
    def json(self) -> Any:
        return orjson.loads(b"".join(m.get("body", b"") for m in self.sent[1:]))


def _call(
    method: str,
    path: str,
    chunks: list[bytes] | None = None,
    *,
    headers: dict[str, str] | None = None,
    limit: int = 1000,
    service: _Service | None = None,
) -> _Exchange:
    chunks = chunks if chunks is not None else [b""]
    given = {"content-type": "application/json", **(headers or {})}
    if "transfer-encoding" not in given and "content-length" not in given:
        given["content-length"] = str(sum(map(len, chunks)))
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
        "headers": [(k.encode(), v.encode()) for k, v in given.items() if v],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    app = create_app(service or _Service(), manage_lifecycle=False, max_body_bytes=limit)  # type: ignore[arg-type]
    exchange = _Exchange(chunks)
    asyncio.run(app(scope, exchange.receive, exchange.send))
    return exchange


def _outcome(service: _Service, endpoint: str, outcome: str) -> float:
    labels = {"path": "http", "endpoint": endpoint, "outcome": outcome}
    return service.metrics.registry.get_sample_value("slipstream_requests_total", labels) or 0.0


def test_a_declared_length_over_the_cap_is_a_413_before_any_byte_is_read() -> None:
    service = _Service()
    for path in ("/v1/fraud/score", "/v1/recommendations", "/healthz"):
        exchange = _call("POST", path, [b"x"], headers={"content-length": "52428800"}, service=service)
        assert exchange.status == 413 and exchange.receives == 0
        assert exchange.headers[b"connection"] == b"close"  # the unread body must not be taken for a request
        assert exchange.json == {
            "error": "body_too_large",
            "detail": "the body is over the 1000-byte limit (Content-Length 52428800)",
        }
    assert _outcome(service, "fraud", "body_too_large") == 1
    assert _outcome(service, "reco", "body_too_large") == 1


def test_a_chunked_body_is_cut_at_the_cap() -> None:
    chunked = {"transfer-encoding": "chunked"}
    for path in ("/v1/fraud/score", "/v1/recommendations", "/readyz"):
        exchange = _call("POST", path, [b"[1," * 100] * 1000, headers=chunked)  # 300 kB sent, 300 bytes a chunk
        assert exchange.status == 413 and exchange.headers[b"connection"] == b"close"
        assert exchange.receives == 4  # 1200 bytes: the cap and one chunk, not one more
        assert exchange.json["detail"] == "the body is over the 1000-byte limit (more than 1000 bytes sent)"


def test_malformed_json_is_a_400_on_the_fast_path_and_on_fastapi() -> None:
    fraud = _call("POST", "/v1/fraud/score", [b'{"transaction_id": 1,'])
    reco = _call("POST", "/v1/recommendations", [b'{"user_id": 1,'])
    assert (fraud.status, reco.status) == (400, 400)
    assert fraud.json == {
        "error": "malformed_request",
        "detail": "malformed JSON: EOF while parsing a value at line 1 column 21",
    }
    assert reco.json["error"] == "malformed_request" and reco.json["detail"].startswith("malformed JSON: Expecting")
    for body in (b"[1, 2]", b"", b"\xff\xfe\xfd"):
        assert _call("POST", "/v1/fraud/score", [body]).status == 400
        assert _call("POST", "/v1/recommendations", [body]).status == 400


def test_what_the_stdlib_parser_refuses_is_a_400_on_fastapi_too() -> None:
    """FastAPI parses with the json module: nesting past the recursion limit, or an integer of more than 4300
    digits, raise there, not in pydantic."""
    for body in (b"[" * 5000 + b"]" * 5000, b'{"user_id": ' + b"9" * 5000 + b"}"):
        exchange = _call("POST", "/v1/recommendations", [body], limit=20_000)
        assert exchange.status == 400, exchange.json
        assert exchange.json["error"] == "malformed_request"
        assert exchange.json["detail"].startswith(
            ("malformed JSON: maximum recursion depth", "malformed JSON: Exceeds")
        )


def test_an_id_past_64_bits_is_a_422_that_names_it() -> None:
    body = b'{"user_id": 18446744073709551616, "candidates": [{"item_id": 1, "category_id": 1}]}'
    exchange = _call("POST", "/v1/recommendations", [body])
    assert exchange.status == 422
    assert exchange.json["problems"] == [
        {
            "field": "user_id",
            "message": "Input should be less than or equal to 9223372036854775807",
            "input": "18446744073709551616",
        }
    ]


def test_a_content_type_that_is_not_json_is_a_415() -> None:
    for path in ("/v1/fraud/score", "/v1/recommendations"):
        exchange = _call("POST", path, [b"a=1"], headers={"content-type": "application/x-www-form-urlencoded"})
        assert exchange.status == 415 and exchange.receives == 0
        assert exchange.json == {
            "error": "unsupported_media",
            "detail": "content-type must be application/json, got 'application/x-www-form-urlencoded'",
        }


def test_fastapis_own_errors_come_in_the_same_shape() -> None:
    missing = _call("GET", "/nowhere", headers={"content-type": ""})
    assert (missing.status, missing.json) == (404, {"error": "not_found", "detail": "Not Found"})
    wrong = _call("GET", "/v1/fraud/score", headers={"content-type": ""})
    assert (wrong.status, wrong.json) == (405, {"error": "method_not_allowed", "detail": "Method Not Allowed"})
    assert wrong.headers[b"allow"] == b"POST"


def test_a_body_under_the_cap_is_handed_on_whole() -> None:
    exchange = _call("GET", "/healthz", [b'{"a": ', b"1}"], headers={"transfer-encoding": "chunked"})
    assert (exchange.status, exchange.json) == (200, {"status": "ok"})
    reco = _call(
        "POST", "/v1/recommendations", [b'{"user_id": 1, ', b'"candidates": [{"item_id": 1, "category_id": 1}]}']
    )
    assert reco.status == 404 and reco.json["error"] == "not_enabled"  # the whole body reached the route


def test_a_byte_order_mark_is_ignored_by_both_endpoints_alike() -> None:
    """RFC 8259 lets a parser ignore a UTF-8 BOM: both endpoints do, so they answer the same body the same way."""
    for path, body in (("/v1/fraud/score", b'{"transaction_id": 1,'), ("/v1/recommendations", b'{"user_id": 1,')):
        plain, marked = _call("POST", path, [body]), _call("POST", path, [b"\xef\xbb\xbf" + body])
        assert plain.status == marked.status == 400
        assert plain.json == marked.json
    fraud = _call("POST", "/v1/fraud/score", [b'\xef\xbb\xbf{"transaction_id": -1}'])
    reco = _call("POST", "/v1/recommendations", [b'\xef\xbb\xbf{"user_id": -1}'])
    assert (fraud.status, reco.status) == (422, 422)  # parsed: the field is judged, not the encoding
