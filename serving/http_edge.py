"""The HTTP edge: what a request must be before the scorer sees it, and the 4xx answers when it is not.

=====  ========================  ===================================================================================
400    ``malformed_request``     not JSON (syntax, encoding, nesting deeper than the parser takes), or not an object
413    ``body_too_large``        over the body cap: from ``Content-Length`` before reading, or while reading a
                                 chunked body (never more than the cap and one chunk is kept); the connection closes
415    ``unsupported_media``     a ``Content-Type`` that is not JSON (none at all is taken as JSON)
422    ``invalid_request``       JSON of the right shape with a bad field: every field named with its value
=====  ========================  ===================================================================================

The bounds are the contracts': ids are Avro longs (0..2**63-1), a category an Avro int, amounts and popularities
finite and >= 0, event times timezone-aware within the range the Kafka path accepts
(:mod:`slipstream.schemas.validation`). An error body quotes at most :data:`EXCERPT_CHARS` characters of a value
and names at most :data:`MAX_PROBLEMS` problems, so its size does not depend on the request's. Pure functions
and data, apart from :func:`read_body` and :func:`send_json`, which speak ASGI.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, Final

import orjson
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from slipstream.schemas.validation import EARLIEST_EVENT_TIME, LATEST_EVENT_TIME
from slipstream.serving.reco import MAX_CANDIDATES

DEFAULT_MAX_BODY_BYTES: Final = 64 * 1024
MAX_INT64: Final = (1 << 63) - 1
MAX_INT32: Final = (1 << 31) - 1
EXCERPT_CHARS: Final = 80  # the most of a bad value an error body quotes
MAX_PROBLEMS: Final = 10  # the most problems a 422 lists (the count of the others is given)
MAX_DETAIL_CHARS: Final = 400
MALFORMED: Final = "malformed_request"
TOO_LARGE: Final = "body_too_large"
UNSUPPORTED_MEDIA: Final = "unsupported_media"
INVALID: Final = "invalid_request"

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# ------------------------------------------------------------------------------------------------ request models


def _in_event_range(value: datetime) -> datetime:
    if not EARLIEST_EVENT_TIME <= value < LATEST_EVENT_TIME:
        msg = f"must be within [{EARLIEST_EVENT_TIME.date()}, {LATEST_EVENT_TIME.date()})"
        raise ValueError(msg)
    return value


def _utf8(value: str) -> str:
    try:
        value.encode()
    except UnicodeEncodeError as exc:
        msg = "must be valid Unicode text (no lone surrogate)"
        raise ValueError(msg) from exc
    return value


Id = Annotated[int, Field(ge=0, le=MAX_INT64)]
Amount = Annotated[float, Field(ge=0, allow_inf_nan=False)]
EventTime = Annotated[AwareDatetime, AfterValidator(_in_event_range)]


class FraudRequest(BaseModel):
    """A card transaction to score before it is authorised."""

    model_config = ConfigDict(extra="forbid")
    transaction_id: Annotated[Id, Field(description="Unique id of the transaction.")]
    customer_id: Id
    terminal_id: Id
    amount: Amount
    event_time: EventTime | None = Field(None, description="When it happened (timezone-aware); default: now.")


class Candidate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item_id: Id
    category_id: Annotated[int, Field(ge=0, le=MAX_INT32)]
    retrieval_views_7d: Annotated[Amount, Field(description="The retrieval stage's popularity: views in 7 days.")] = 0.0


class RecoRequest(BaseModel):
    """A user and the candidates a retrieval stage proposed; the ranker orders them."""

    model_config = ConfigDict(extra="forbid")
    request_id: Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_utf8)] | None = None
    user_id: Id
    candidates: Annotated[list[Candidate], Field(min_length=1, max_length=MAX_CANDIDATES)]
    top_k: Annotated[int | None, Field(ge=1, le=MAX_INT32)] = None
    event_time: EventTime | None = None
    include_features: bool = False


# ------------------------------------------------------------------------------------------------ error bodies


@dataclass(frozen=True, slots=True)
class Rejection:
    """A 4xx answer: status, the ``error`` kind (also the metrics outcome), a one-line detail, and for a 422 the
    problems one by one."""

    status: int
    error: str
    detail: str
    problems: tuple[dict[str, Any], ...] = field(default=())

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.error, "detail": self.detail}
        if self.problems:
            out["problems"] = list(self.problems)
        return out


def one_line(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    """``text`` on one line, valid UTF-8, cut to ``limit`` characters (a cut ends with "…")."""
    text = text[: limit * 2]
    if not (text.isprintable() and text.isascii()):
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _scalar(value: Any, limit: int) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 4 * limit:
        return f"<{value.bit_length()}-bit integer>"  # never str() it: that is quadratic, and capped at 4300 digits
    if isinstance(value, str | bytes | bytearray):
        return repr(value[: limit + 1])
    return repr(value)


def _pieces(value: Any, limit: int, depth: int = 0) -> Iterator[str]:
    """``value`` rendered piece by piece, lazily: a consumer that stops early never walks the rest."""
    if isinstance(value, Mapping | list | tuple) and depth >= 8:
        yield "…"
    elif isinstance(value, Mapping):
        yield "{"
        for i, (key, item) in enumerate(value.items()):
            yield ", " if i else ""
            yield from _pieces(key, limit, depth + 1)
            yield ": "
            yield from _pieces(item, limit, depth + 1)
        yield "}"
    elif isinstance(value, list | tuple):
        yield "["
        for i, item in enumerate(value):
            yield ", " if i else ""
            yield from _pieces(item, limit, depth + 1)
        yield "]"
    else:
        yield _scalar(value, limit)


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> str:
    """A short, one-line rendering of any value (Python literal syntax, as ``repr``), at most ``limit`` characters:
    whatever its size or depth, only about ``limit`` characters of it are ever rendered."""
    out: list[str] = []
    size = 0
    for piece in _pieces(value, limit):
        out.append(piece)
        size += len(piece)
        if size > limit:
            break
    return one_line("".join(out), limit)


def json_safe(value: Any) -> Any:
    """``value`` as an error body may carry it: small JSON scalars as they are, anything else as an excerpt."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and -(1 << 63) <= value <= MAX_INT64:
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, str) and len(value) <= EXCERPT_CHARS and value == one_line(value, EXCERPT_CHARS):
        return value
    return excerpt(value)


def _json_kind(value: Any) -> str:
    kinds = ((bool, "a boolean"), (int | float, "a number"), (str, "a string"), (list, "an array"))
    return next((name for kind, name in kinds if isinstance(value, kind)), "null" if value is None else "bytes")


def _malformed(error: Mapping[str, Any]) -> str:
    """The one-line reason of a JSON syntax error: pydantic's parser (``msg``) or FastAPI's (``ctx`` + position)."""
    ctx = error.get("ctx") or {}
    if "error" in ctx:
        where = [p for p in error["loc"] if isinstance(p, int)]
        reason = f"{ctx['error']}" + (f" at position {where[0]}" if where else "")
    else:
        reason = str(error["msg"]).removeprefix("Invalid JSON: ")
    return f"malformed JSON: {reason}"


def reject_invalid(errors: Sequence[Mapping[str, Any]]) -> Rejection:
    """The answer to pydantic's errors for a body: 400 when it is not JSON or not an object, else 422 naming each
    bad field with (an excerpt of) its value."""
    for error in errors:
        if error["type"] == "json_invalid":
            return Rejection(400, MALFORMED, one_line(_malformed(error)))
    problems: list[dict[str, Any]] = []
    parts: list[str] = []
    for error in errors:
        path = [p for p in error["loc"] if p != "body"]
        if not path:  # the body as a whole
            if error["type"] == "missing":
                return Rejection(400, MALFORMED, "empty body: expected a JSON object")
            return Rejection(400, MALFORMED, f"the body must be a JSON object, got {_json_kind(error.get('input'))}")
        if len(problems) == MAX_PROBLEMS:
            continue
        name = one_line(".".join(str(p) for p in path), EXCERPT_CHARS)
        problem: dict[str, Any] = {"field": name, "message": one_line(str(error["msg"]), 160)}
        if error["type"] == "missing":  # its "input" is the object around it: not worth quoting
            parts.append(f"{name}: {problem['message']}")
        else:
            problem["input"] = json_safe(error.get("input"))
            parts.append(f"{name}={excerpt(error.get('input'))}: {problem['message']}")
        problems.append(problem)
    if len(errors) > 3:
        parts[3:] = [f"and {len(errors) - 3} more"]
    return Rejection(422, INVALID, one_line("; ".join(parts)), tuple(problems))


def too_large(limit: int, declared: int | None = None) -> Rejection:
    seen = f"Content-Length {declared}" if declared is not None else f"more than {limit} bytes sent"
    return Rejection(413, TOO_LARGE, f"the body is over the {limit}-byte limit ({seen})")


# ------------------------------------------------------------------------------------------------ headers and body


@dataclass(frozen=True, slots=True)
class Screened:
    """What the headers say of a request: whether a body follows, and the answer when it must be refused unread."""

    has_body: bool
    rejection: Rejection | None = None


def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


def screen(headers: Sequence[tuple[bytes, bytes]], *, limit: int, json_body: bool) -> Screened:
    """Check the headers before any byte of the body is read: a ``Content-Length`` over ``limit`` is a 413, one
    that is not a number a 400; with ``json_body`` a ``Content-Type`` other than JSON is a 415."""
    length: int | None = None
    chunked = False
    content_type: bytes | None = None
    for name, value in headers:
        if name == b"content-length":
            text = value.strip()
            if not text.isdigit() or (length is not None and int(text) != length):
                shown = excerpt(value.decode("latin-1"))
                return Screened(True, Rejection(400, MALFORMED, f"Content-Length must be one number, got {shown}"))
            length = int(text)
        elif name == b"transfer-encoding":
            chunked = True
        elif name == b"content-type":
            content_type = value
    has_body = chunked or bool(length)
    if length is not None and length > limit:
        return Screened(has_body, too_large(limit, length))
    if json_body and content_type is not None and not _is_json(content_type):
        shown = excerpt(content_type.decode("latin-1"))
        return Screened(
            has_body, Rejection(415, UNSUPPORTED_MEDIA, f"content-type must be application/json, got {shown}")
        )
    return Screened(has_body)


class Cut(Enum):
    """Why :func:`read_body` stopped before the end of the body."""

    TOO_LARGE = "too_large"
    DISCONNECTED = "disconnected"


async def read_body(receive: Receive, limit: int) -> bytes | Cut:
    """The request body, read chunk by chunk; :attr:`Cut.TOO_LARGE` as soon as it passes ``limit`` bytes (the rest
    is never read), :attr:`Cut.DISCONNECTED` when the client left."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return Cut.DISCONNECTED
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return Cut.TOO_LARGE
        chunks.append(chunk)
        if not message.get("more_body"):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` (already read) as one message, then whatever ``receive`` gives."""
    given = False

    async def again() -> dict[str, Any]:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return again


async def send_json(
    send: Send, status: int, payload: Any, *, close: bool = False, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """One JSON response; ``close``: the body was not read to its end, so the connection must not be reused;
    ``headers``: more headers (lower-case names)."""
    data = orjson.dumps(payload)
    sent = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *headers]
    if close:
        sent.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": sent})
    await send({"type": "http.response.body", "body": data})
