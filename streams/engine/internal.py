"""The engine's internal messages and state keys: what a stage sends the next one (events with the features so far,
watermark markers) and how entity states are keyed in the changelog. Pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from slipstream.features.base import FeatureView
from slipstream.streams.engine.exceptions import InternalMessageError
from slipstream.streams.engine.topology import Topology, required_fields


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


class InternalChecks:
    """Why a decoded message of an internal topic cannot be processed by a stage whose views read
    ``views_by_source``: a marker's shape, an event's envelope, the fields the stage reads and their time types."""

    def __init__(self, topology: Topology, views_by_source: Mapping[str, Sequence[FeatureView]]) -> None:
        self.topology = topology
        self._views_by_source = views_by_source
        self._needs: dict[str, set[str]] = {}

    def problem(self, payload: Mapping[str, Any]) -> str | None:
        """The reason, in one line (``None``: it can be processed)."""
        if "wms" in payload:
            marks, n, floors = payload.get("wms"), payload.get("n"), payload.get("fl", [])
            if isinstance(n, int) and isinstance(marks, list) and isinstance(floors, list):
                if all(is_mark(m) for m in marks) and all(is_mark(m) for m in floors):
                    return None
            return f"malformed watermark marker: {str(dict(payload))[:200]}"
        src, rec, feat, nt = (payload.get(k) for k in ("src", "rec", "feat", "nt"))
        if not (isinstance(src, str) and isinstance(rec, dict) and isinstance(feat, dict) and isinstance(nt, int)):
            return f"internal event without src (text), rec and feat (objects) and nt (int): {str(dict(payload))[:200]}"
        needs = self._needs.get(src)
        if needs is None:
            if src not in self.topology.topics_read:
                feature_set = self.topology.feature_set.name
                return f"internal event of {src!r}, a topic feature set {feature_set!r} does not read"
            needs = self._needs[src] = required_fields(self.topology, src)
        missing = sorted(needs - rec.keys())
        if missing:
            return f"internal {src} event lacks fields {missing}: {str(rec)[:200]}"
        for view in self._views_by_source.get(src, ()):
            source = view.source(src)
            for name in (source.time_field, source.known_by):
                if name and (not isinstance(rec[name], int) or isinstance(rec[name], bool)):
                    return f"internal {src} event: {name} is {rec[name]!r}, not epoch microseconds"
        return None


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
    "InternalChecks",
    "decode_internal",
    "encode_internal",
    "is_mark",
    "state_key",
    "state_key_parts",
    "watermark_key",
    "watermark_source",
]
