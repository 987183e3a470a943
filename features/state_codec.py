"""The bytes of an entity's window state: what the engine writes to Redis and its changelog, and the scorer reads.

Binary, little-endian, so that encoding and decoding are a few ``memcpy``-like calls per column rather than one
Python object per value::

    b"\\xa7S2"                    magic (a JSON state, the format before this one, starts with "{")
    int64  newest_us
    uint16 number of rings
    per ring:
        uint16 + UTF-8            source topic
        uint32 n                  events
        int64[n] times, int64[n] ids, int64[n] known-at times
        uint16                    number of value columns
        per column:
            uint16 + UTF-8        field name
            1 byte kind           b"d": float64[n]; b"q": int64[n]; b"j": uint32 length + JSON list
                                  (values a typed array cannot hold, such as strings)

:func:`decode_state` also reads the JSON format, so changelogs and Redis written before it stay readable.
Pure: no I/O.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Callable, Mapping, MutableSequence, Sequence
from typing import Any, Protocol, TypeVar

import orjson

from slipstream.features.exceptions import StateFormatError

MAGIC = b"\xa7S2"
_HEAD = struct.Struct("<qH")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_LITTLE = sys.byteorder == "little"


Column = MutableSequence[Any]  # array('d') of floats, array('q') of ints and bools, or a list of anything else


class RingColumns(Protocol):
    @property
    def times(self) -> array[int]: ...
    @property
    def ids(self) -> array[int]: ...
    @property
    def known(self) -> array[int]: ...
    @property
    def values(self) -> Mapping[str, Column]: ...


R = TypeVar("R")
RingFactory = Callable[["array[int]", "array[int]", "array[int]", dict[str, Column]], R]


def new_column(value: object) -> Column:
    """An empty column for values like ``value``: a typed array for numbers (no Python object per value, and
    nothing for the cyclic garbage collector to walk), a list for anything else."""
    if isinstance(value, float):
        return array("d")
    if isinstance(value, int):  # bool included: stored as 0 / 1
        return array("q")
    return []


def column_of(values: Sequence[Any]) -> Column:
    """``values`` in the column :func:`new_column` would choose for all of them (a list when they are mixed)."""
    if values and all(type(v) is float for v in values):
        return array("d", values)
    if values and all(isinstance(v, int) and -(2**63) <= v < 2**63 for v in values):
        return array("q", values)
    return list(values)


def _le(column: array[Any]) -> bytes:
    if _LITTLE:
        return column.tobytes()
    swapped = array(column.typecode, column)
    swapped.byteswap()
    return swapped.tobytes()


def _name(text: str) -> bytes:
    raw = text.encode()
    return _U16.pack(len(raw)) + raw


def encode_state(newest_us: int, rings: Mapping[str, RingColumns]) -> bytes:
    parts = [MAGIC, _HEAD.pack(newest_us, len(rings))]
    for topic, ring in rings.items():
        n = len(ring.times)
        parts += [_name(topic), _U32.pack(n)]
        parts += [_le(ring.times), _le(ring.ids), _le(ring.known)]
        parts.append(_U16.pack(len(ring.values)))
        for field, column in ring.values.items():
            if len(column) != n:
                msg = f"column {field!r} of ring {topic!r} has {len(column)} values for {n} events"
                raise StateFormatError(msg)
            parts.append(_name(field))
            if isinstance(column, array) and column.typecode in ("d", "q"):
                parts += [column.typecode.encode(), _le(column)]
            else:
                text = orjson.dumps(list(column))
                parts += [b"j", _U32.pack(len(text)), text]
    return b"".join(parts)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.view = memoryview(data)
        self.at = 0

    def take(self, size: int) -> memoryview:
        end = self.at + size
        if end > len(self.view):
            msg = f"state bytes end at {len(self.view)}, {end} needed: truncated"
            raise StateFormatError(msg)
        chunk = self.view[self.at : end]
        self.at = end
        return chunk

    def unpack(self, fmt: struct.Struct) -> tuple[Any, ...]:
        return fmt.unpack(self.take(fmt.size))

    def name(self) -> str:
        (size,) = self.unpack(_U16)
        raw = self.take(size)
        try:
            return str(raw, "utf-8")
        except UnicodeDecodeError as exc:
            msg = f"a name in the state is not UTF-8: {bytes(raw)[:40]!r}"
            raise StateFormatError(msg) from exc

    def array(self, typecode: str, n: int) -> array[Any]:
        out = array(typecode)
        out.frombytes(self.take(8 * n))
        if not _LITTLE:
            out.byteswap()
        return out


def decode_state(data: bytes, ring: RingFactory[R]) -> tuple[int, dict[str, R]]:
    """``(newest_us, rings by topic)``; raises :class:`StateFormatError` naming what is wrong."""
    if data[:1] == b"{":
        return _decode_json(data, ring)
    if data[: len(MAGIC)] != MAGIC:
        msg = f"unknown state format (first bytes {bytes(data[:4])!r})"
        raise StateFormatError(msg)
    reader = _Reader(data)
    reader.take(len(MAGIC))
    newest_us, n_rings = reader.unpack(_HEAD)
    rings: dict[str, R] = {}
    for _ in range(n_rings):
        topic = reader.name()
        (n,) = reader.unpack(_U32)
        times, ids, known = reader.array("q", n), reader.array("q", n), reader.array("q", n)
        (n_columns,) = reader.unpack(_U16)
        values: dict[str, Column] = {}
        for _ in range(n_columns):
            field = reader.name()
            kind = bytes(reader.take(1))
            if kind in (b"d", b"q"):
                values[field] = reader.array(kind.decode(), n)
            elif kind == b"j":
                (size,) = reader.unpack(_U32)
                values[field] = _json_column(reader.take(size), n, field, topic)
            else:
                msg = f"unknown column kind {kind!r} for field {field!r} of ring {topic!r}"
                raise StateFormatError(msg)
        rings[topic] = ring(times, ids, known, values)
    if reader.at != len(data):
        msg = f"{len(data) - reader.at} bytes left over after the last ring"
        raise StateFormatError(msg)
    return int(newest_us), rings


def _json_column(raw: memoryview, n: int, field: str, topic: str) -> Column:
    try:
        column = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        msg = f"column {field!r} of ring {topic!r} is not JSON: {exc}"
        raise StateFormatError(msg) from exc
    if not isinstance(column, list) or len(column) != n:
        msg = f"column {field!r} of ring {topic!r} is not a list of {n} values"
        raise StateFormatError(msg)
    return column


def _decode_json(data: bytes, ring: RingFactory[R]) -> tuple[int, dict[str, R]]:
    try:
        raw = orjson.loads(data)
        rings = {
            topic: ring(
                array("q", times), array("q", ids), array("q", known), {f: column_of(v) for f, v in vals.items()}
            )
            for topic, (times, ids, known, vals) in raw["r"].items()
        }
        return int(raw["n"]), rings
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, OverflowError, AttributeError) as exc:
        msg = f"unreadable JSON state: {exc}"
        raise StateFormatError(msg) from exc


__all__ = ["MAGIC", "Column", "column_of", "decode_state", "encode_state", "new_column"]
