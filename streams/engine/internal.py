"""The engine's internal messages and state keys: what a stage sends the next one (events with the features so far,
watermark markers) and how entity states are keyed in the changelog. Pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from slipstream.streams.engine.exceptions import InternalMessageError


def is_mark(mark: Any) -> bool:
    """A ``[source, upstream partition, time]`` triple of a watermark marker."""
    return (
        isinstance(mark, list)
        and len(mark) == 3
        and isinstance(mark[0], str)
        and all(isinstance(v, int) for v in mark[1:])
    )


def encode_internal(payload: Mapping[str, Any]) -> bytes:
    return orjson.dumps(payload)


def decode_internal(data: bytes) -> dict[str, Any]:
    """The payload of a message on an engine-internal topic; :class:`InternalMessageError` unless a JSON object."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        msg = f"internal engine message is not JSON: {data[:60]!r}"
        raise InternalMessageError(msg) from exc
    if not isinstance(value, dict):
        msg = f"internal engine message is not an object: {data[:60]!r}"
        raise InternalMessageError(msg)
    return value


def state_key(view: str, key: tuple[Any, ...]) -> bytes:
    return orjson.dumps([view, *key])


def watermark_key(source: str) -> bytes:
    """The changelog key of a direct stage's watermark checkpoints for input ``source`` (on the partition's own
    changelog partition). An object, where every :func:`state_key` is an array: the two never collide."""
    return orjson.dumps({"wm": source})


def watermark_source(key: bytes) -> str | None:
    """The source of a :func:`watermark_key` (``None`` for an entity's state key)."""
    if not key.startswith(b"{"):
        return None
    value = orjson.loads(key)
    return str(value["wm"]) if isinstance(value, dict) and "wm" in value else None


def state_key_parts(key: bytes) -> tuple[str, tuple[Any, ...]]:
    """``(view, key values)`` of a :func:`state_key`."""
    view, *values = orjson.loads(key)
    return str(view), tuple(values)


__all__ = [
    "decode_internal",
    "encode_internal",
    "is_mark",
    "state_key",
    "state_key_parts",
    "watermark_key",
    "watermark_source",
]
