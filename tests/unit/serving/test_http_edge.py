"""The HTTP edge's pure pieces: excerpts of any value stay short and safe, pydantic's errors become 400 or 422 with
the field and the value named, the headers are screened before a body is read, a body is never read past the cap,
and the request models hold the contracts' bounds."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from slipstream.exceptions import ConfigError
from slipstream.serving.http_edge import (
    EXCERPT_CHARS,
    MAX_DETAIL_CHARS,
    MAX_INT64,
    MAX_PROBLEMS,
    Cut,
    FraudRequest,
    RecoRequest,
    excerpt,
    json_safe,
    read_body,
    reject_invalid,
    replay,
    screen,
)
from slipstream.settings import load_settings

VALID = {"transaction_id": 1, "customer_id": 2, "terminal_id": 3, "amount": 4.5}


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "value",
    [
        "x" * 100_000,
        b"\xff" * 100_000,
        10**5000,  # str() of it is refused past 4300 digits
        -(2**70_000),
        _nested(50_000),  # repr() of it is a RecursionError
        {"k" * 1000: ["v" * 1000] * 1000},
        "\ud800 lone surrogate\nand a newline",
        float("nan"),
    ],
    ids=["long-text", "long-bytes", "huge-int", "huge-negative-int", "deep", "wide", "surrogate", "nan"],
)
def test_an_excerpt_is_short_one_line_and_valid_utf8(value: Any) -> None:
    shown = excerpt(value)
    assert 0 < len(shown) <= EXCERPT_CHARS
    assert "\n" not in shown
    shown.encode("utf-8")  # no lone surrogate left
    assert orjson.loads(orjson.dumps({"input": json_safe(value)}))  # always serialisable


def test_an_excerpt_keeps_small_values_as_repr_shows_them() -> None:
    assert excerpt(-5) == "-5"
    assert excerpt("abc") == "'abc'"
    assert excerpt({"a": [1, 2]}) == "{'a': [1, 2]}"
    assert excerpt(2**64).isdigit()  # past int64 but short enough to show whole
    assert excerpt(10**400) == "<1329-bit integer>"
    assert excerpt("x" * 500).endswith("…")


@pytest.mark.parametrize("value", [None, True, 0, -(2**63), MAX_INT64, 1.5, "short", "é"])
def test_json_safe_keeps_small_json_values(value: Any) -> None:
    assert json_safe(value) == value


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, float("inf"), float("nan"), "x" * 81, "\ud800", b"x", [1]])
def test_json_safe_quotes_the_rest_as_a_short_string(value: Any) -> None:
    shown = json_safe(value)
    assert isinstance(shown, str) and len(shown) <= EXCERPT_CHARS


def _errors(body: bytes, model: Any = FraudRequest) -> list[Any]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate_json(body)
    return caught.value.errors()


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"{bad", "malformed JSON: key must be a string at line 1 column 2"),
        (b"", "malformed JSON: EOF while parsing a value at line 1 column 0"),
        (b"\xff\xfe", "malformed JSON: expected value at line 1 column 1"),
        (b"[" * 10_000, "malformed JSON: recursion limit exceeded"),
        (b'{"transaction_id": ' + b"9" * 5000 + b"}", "malformed JSON: number out of range"),
        (b"[1, 2]", "the body must be a JSON object, got an array"),
        (b'"text"', "the body must be a JSON object, got a string"),
        (b"null", "the body must be a JSON object, got null"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_a_400(body: bytes, detail: str) -> None:
    rejection = reject_invalid(_errors(body))
    assert (rejection.status, rejection.error) == (400, "malformed_request")
    assert rejection.detail.startswith(detail)
    assert rejection.body() == {"error": "malformed_request", "detail": rejection.detail}


def test_fastapi_shaped_errors_of_the_whole_body_are_400s() -> None:
    syntax = {
        "type": "json_invalid",
        "loc": ("body", 12),
        "msg": "JSON decode error",
        "ctx": {"error": "Expecting ','"},
    }
    assert reject_invalid([syntax]).detail == "malformed JSON: Expecting ',' at position 12"
    empty = {"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}
    assert reject_invalid([empty]).detail == "empty body: expected a JSON object"
    array = {"type": "model_attributes_type", "loc": ("body",), "msg": "Input should be an object", "input": [1]}
    assert reject_invalid([array]).detail == "the body must be a JSON object, got an array"


def test_a_bad_field_is_a_422_naming_it_and_its_value() -> None:
    rejection = reject_invalid(_errors(orjson.dumps({**VALID, "amount": -5})))
    assert (rejection.status, rejection.error) == (422, "invalid_request")
    assert rejection.detail == "amount=-5: Input should be greater than or equal to 0"
    assert rejection.problems == (
        {"field": "amount", "message": "Input should be greater than or equal to 0", "input": -5},
    )


def test_an_id_past_64_bits_is_a_422_and_its_body_serialises() -> None:
    huge = 2**70
    rejection = reject_invalid(
        _errors(orjson.dumps({**VALID, "transaction_id": 0}).replace(b"0", str(huge).encode(), 1))
    )
    assert rejection.status == 422
    assert rejection.detail.startswith(f"transaction_id={huge}: Input should be less than or equal to {MAX_INT64}")
    assert rejection.problems[0]["input"] == str(huge)  # quoted: a JSON encoder may refuse the number itself
    orjson.dumps(rejection.body())


def test_a_missing_field_does_not_quote_the_object_around_it() -> None:
    rejection = reject_invalid(
        _errors(b'{"customer_id": 1, "terminal_id": 2, "amount": 3, "note": "' + b"x" * 5000 + b'"}')
    )
    assert rejection.problems[0] == {"field": "transaction_id", "message": "Field required"}
    assert rejection.detail.startswith("transaction_id: Field required; note='xxx")


def test_many_bad_fields_give_a_bounded_answer() -> None:
    candidates = [{"item_id": -1, "category_id": -1, "k" * 500: "v" * 500}] * 500
    errors = _errors(orjson.dumps({"user_id": 1, "candidates": candidates}), RecoRequest)
    rejection = reject_invalid(errors)
    assert len(errors) == 1500
    assert len(rejection.problems) == MAX_PROBLEMS
    assert rejection.detail.endswith("and 1497 more")
    assert len(rejection.detail) <= MAX_DETAIL_CHARS and "\n" not in rejection.detail
    assert all(len(p["field"]) <= EXCERPT_CHARS for p in rejection.problems)
    assert len(orjson.dumps(rejection.body())) < 4096


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (b'"transaction_id": 9223372036854775808', "transaction_id"),
        (b'"customer_id": -1', "customer_id"),
        (b'"amount": 1e400', "amount"),
        (b'"amount": NaN', "amount"),
        (b'"event_time": "1999-12-31T23:59:59+00:00"', "event_time"),
        (b'"event_time": "2100-01-01T00:00:00Z"', "event_time"),
        (b'"event_time": "2024-01-01T00:00:00"', "event_time"),  # naive
        (b'"event_time": 100000000000000000000', "event_time"),
        (b'"extra": 1', "extra"),
    ],
)
def test_the_fraud_request_holds_the_contract_bounds(change: bytes, field: str) -> None:
    body = b'{"transaction_id": 1, "customer_id": 2, "terminal_id": 3, "amount": 4.5, ' + change + b"}"
    body = body.replace(b'"transaction_id": 1, ', b"", 1) if field == "transaction_id" else body
    body = body.replace(b'"customer_id": 2, ', b"", 1) if field == "customer_id" else body
    body = body.replace(b'"amount": 4.5, ', b"", 1) if field == "amount" else body
    assert [".".join(map(str, e["loc"])) for e in _errors(body)] == [field]


def test_the_event_time_range_is_the_kafka_paths() -> None:
    assert FraudRequest.model_validate({**VALID, "event_time": "2000-01-01T00:00:00Z"}).event_time is not None
    assert FraudRequest.model_validate({**VALID, "event_time": "2099-12-31T23:59:59.999999+00:00"}).event_time
    assert FraudRequest.model_validate({**VALID, "transaction_id": MAX_INT64}).transaction_id == MAX_INT64


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"candidates": [{"item_id": 1, "category_id": 1}] * 2001}, "candidates"),
        ({"candidates": []}, "candidates"),
        ({"top_k": 2**31}, "top_k"),
        ({"user_id": 2**63}, "user_id"),
        ({"request_id": ""}, "request_id"),
        ({"request_id": "\ud800"}, "request_id"),  # stdlib json (FastAPI's parser) lets a lone surrogate through
        ({"candidates": [{"item_id": 1, "category_id": 2**31}]}, "candidates.0.category_id"),
        ({"candidates": [{"item_id": 1, "category_id": 1, "retrieval_views_7d": float("nan")}]}, "candidates.0"),
    ],
)
def test_the_reco_request_holds_the_contract_bounds(changes: dict[str, Any], field: str) -> None:
    request = {"user_id": 1, "candidates": [{"item_id": 1, "category_id": 1}], **changes}
    with pytest.raises(ValidationError) as caught:
        RecoRequest.model_validate(request)
    assert all(".".join(map(str, e["loc"])).startswith(field) for e in caught.value.errors())


def _headers(**values: str) -> list[tuple[bytes, bytes]]:
    return [(k.replace("_", "-").encode(), v.encode()) for k, v in values.items()]


def test_screen_refuses_a_declared_length_over_the_cap_before_any_byte() -> None:
    screened = screen(_headers(content_length="52428800"), limit=65536, json_body=True)
    assert screened.has_body and screened.rejection is not None
    assert (screened.rejection.status, screened.rejection.error) == (413, "body_too_large")
    assert screened.rejection.detail == "the body is over the 65536-byte limit (Content-Length 52428800)"
    assert screen(_headers(content_length="65536"), limit=65536, json_body=True).rejection is None


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        (_headers(content_length="12", content_type="text/plain"), 415),
        (_headers(content_length="12", content_type="application/x-www-form-urlencoded"), 415),
        (_headers(content_length="abc"), 400),
        ([(b"content-length", b"3"), (b"content-length", b"4")], 400),
        (_headers(content_length="12", content_type="application/json; charset=utf-8"), None),
        (_headers(content_length="12", content_type="application/problem+json"), None),
        (_headers(content_length="12"), None),  # no content type: taken as JSON
    ],
)
def test_screen_checks_the_content_headers(headers: list[tuple[bytes, bytes]], status: int | None) -> None:
    rejection = screen(headers, limit=65536, json_body=True).rejection
    assert (None if rejection is None else rejection.status) == status


def test_screen_tells_whether_a_body_follows() -> None:
    assert not screen([], limit=10, json_body=False).has_body
    assert not screen(_headers(content_length="0"), limit=10, json_body=False).has_body
    assert screen(_headers(transfer_encoding="chunked"), limit=10, json_body=False).has_body
    assert screen(_headers(content_type="text/plain"), limit=10, json_body=False).rejection is None  # a GET's


class _Chunks:
    """An ASGI ``receive`` over chunks, counting the calls; ``complete=False``: the client leaves before the end."""

    def __init__(self, chunks: list[bytes], *, complete: bool = True) -> None:
        self.chunks = chunks
        self.complete = complete
        self.calls = 0

    async def __call__(self) -> dict[str, Any]:
        self.calls += 1
        if self.calls <= len(self.chunks):
            more = self.calls < len(self.chunks) or not self.complete
            return {"type": "http.request", "body": self.chunks[self.calls - 1], "more_body": more}
        return {"type": "http.disconnect"}


def test_read_body_joins_the_chunks_under_the_cap() -> None:
    receive = _Chunks([b"ab", b"", b"cd"])
    assert asyncio.run(read_body(receive, limit=4)) == b"abcd"


def test_read_body_stops_at_the_first_chunk_past_the_cap() -> None:
    receive = _Chunks([b"x" * 1000] * 1000)
    assert asyncio.run(read_body(receive, limit=2500)) is Cut.TOO_LARGE
    assert receive.calls == 3  # 3000 bytes read of the 1,000,000 sent: never more than the cap and one chunk


def test_read_body_notices_a_client_that_left() -> None:
    assert asyncio.run(read_body(_Chunks([b"x", b"y"], complete=False), limit=100)) is Cut.DISCONNECTED


def test_replay_gives_the_body_once_then_the_real_receive() -> None:
    again = replay(b"body", _Chunks([]))

    async def twice() -> list[dict[str, Any]]:
        return [await again(), await again()]

    assert asyncio.run(twice()) == [
        {"type": "http.request", "body": b"body", "more_body": False},
        {"type": "http.disconnect"},
    ]


def test_the_body_cap_is_a_validated_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLIPSTREAM_HTTP_MAX_BODY_BYTES", raising=False)
    assert load_settings().http_max_body_bytes == 64 * 1024
    monkeypatch.setenv("SLIPSTREAM_HTTP_MAX_BODY_BYTES", "1000")
    assert load_settings().http_max_body_bytes == 1000
    monkeypatch.setenv("SLIPSTREAM_HTTP_MAX_BODY_BYTES", "0")
    with pytest.raises(ConfigError, match="SLIPSTREAM_HTTP_MAX_BODY_BYTES='0': Input should be greater than 0"):
        load_settings()
