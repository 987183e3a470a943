"""Avro binary encoding compiled once per schema: the hot path's encoder for the records Slipstream itself produces.

``fastavro.schemaless_writer`` walks the schema for every record; for a prediction (twenty fields, three maps) that
is about 22 µs, a fifth of the scorer's time per event. :func:`compile_writer` walks the schema once and returns a
function of the record built from one small writer per field; a map of doubles whose keys repeat (a model's
feature names) is packed with one ``struct`` call per key set. It writes byte for byte what fastavro writes
(``tests/unit/schemas/test_compiled_writer.py`` compares them on every contract's schema).

It covers what Slipstream's schemas use: primitives, records, enums, arrays, maps, fixed, unions of ``null`` and one
other type, and the timestamp logical types. :func:`compile_writer` returns ``None`` for anything else, and a record
the compiled writer cannot write raises a :class:`~slipstream.schemas.exceptions.SerializationError`:
``FieldTypeError`` (a wrong type), ``FieldNameError`` (a missing or unknown field) or ``LongOverflowError``; an enum
symbol it does not know, or a record that is not a mapping, fails in the lookup itself. Whatever it raises,
:class:`~slipstream.schemas.serde.AvroSerde` falls back to fastavro, which writes the record or explains what does
not fit. The compiled writer never accepts a record with a different meaning: it is stricter than fastavro, never
looser.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from slipstream.schemas.exceptions import FieldNameError, FieldTypeError, LongOverflowError

Out = list[bytes]
FieldWriter = Callable[[Any, Out], None]
RecordWriter = Callable[[Mapping[str, Any]], bytes]

_SMALL = [bytes((i,)) for i in range(128)]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_MS = timedelta(milliseconds=1)
_DOUBLE = struct.Struct("<d").pack
_FLOAT = struct.Struct("<f").pack
_MISSING = object()
_MAX_MAP_FORMATS = 64  # distinct key sets packed in one call per map field; beyond that, key by key


class _Unsupported(Exception):
    """The schema uses something the compiled writer does not cover: use fastavro."""


def varint(n: int) -> bytes:
    """Zig-zag varint of a long (Avro ``int``/``long``)."""
    if not -(2**63) <= n < 2**63:
        msg = f"{n} does not fit in a long"
        raise LongOverflowError(msg)
    n = (n << 1) ^ (n >> 63)
    if n < 0x80:
        return _SMALL[n]
    out = []
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _string(value: str) -> bytes:
    data = value.encode()
    return varint(len(data)) + data


def _long(value: Any, out: Out) -> None:
    if type(value) is not int:  # not a bool either: fastavro refuses one in a union, so this writer never takes one
        msg = f"expected an int, got {type(value).__name__}"
        raise FieldTypeError(msg)
    out.append(varint(value))


def _int(value: Any, out: Out) -> None:
    if type(value) is not int or not -(2**31) <= value < 2**31:
        msg = f"expected a 32-bit int, got {value!r}"
        raise FieldTypeError(msg)
    out.append(varint(value))


def _timestamp(unit: timedelta) -> FieldWriter:
    def write(value: Any, out: Out) -> None:
        if isinstance(value, datetime):
            if value.tzinfo is None:
                msg = "naive datetime"
                raise FieldTypeError(msg)
            value = (value - _EPOCH) // unit
        _long(value, out)

    return write


def _real(pack: Callable[[float], bytes]) -> FieldWriter:
    """A ``double`` or ``float`` writer: a float or an int (not a bool), packed little-endian."""

    def write(value: Any, out: Out) -> None:
        if type(value) is not float and type(value) is not int:
            msg = f"expected a float, got {type(value).__name__}"
            raise FieldTypeError(msg)
        out.append(pack(value))

    return write


_double = _real(_DOUBLE)


def _boolean(value: Any, out: Out) -> None:
    if value is True:
        out.append(b"\x01")
    elif value is False:
        out.append(b"\x00")
    else:
        msg = f"expected a bool, got {type(value).__name__}"
        raise FieldTypeError(msg)


def _null(value: Any, out: Out) -> None:
    if value is not None:
        msg = f"expected None, got {type(value).__name__}"
        raise FieldTypeError(msg)


def _str(value: Any, out: Out) -> None:
    if type(value) is not str:
        msg = f"expected a str, got {type(value).__name__}"
        raise FieldTypeError(msg)
    out.append(_string(value))


def _bytes(value: Any, out: Out) -> None:
    if type(value) is not bytes:
        msg = f"expected bytes, got {type(value).__name__}"
        raise FieldTypeError(msg)
    out.append(varint(len(value)) + value)


_PRIMITIVES: dict[str, FieldWriter] = {
    "null": _null,
    "boolean": _boolean,
    "int": _int,
    "long": _long,
    "float": _real(_FLOAT),
    "double": _double,
    "string": _str,
    "bytes": _bytes,
}


def _enum(symbols: list[str]) -> FieldWriter:
    index = {s: varint(i) for i, s in enumerate(symbols)}

    def write(value: str, out: Out) -> None:
        out.append(index[value])

    return write


def _fixed(size: int) -> FieldWriter:
    def write(value: bytes, out: Out) -> None:
        if type(value) is not bytes or len(value) != size:
            msg = f"expected {size} bytes"
            raise FieldTypeError(msg)
        out.append(value)

    return write


def _array(items: FieldWriter) -> FieldWriter:
    def write(value: Any, out: Out) -> None:
        if not isinstance(value, list | tuple):
            msg = f"expected a list, got {type(value).__name__}"
            raise FieldTypeError(msg)
        if value:
            out.append(varint(len(value)))
            for item in value:
                items(item, out)
        out.append(b"\x00")

    return write


def _map(values: FieldWriter) -> FieldWriter:
    def write(value: Any, out: Out) -> None:
        if not isinstance(value, Mapping):
            msg = f"expected a mapping, got {type(value).__name__}"
            raise FieldTypeError(msg)
        if value:
            out.append(varint(len(value)))
            for key, item in value.items():
                _str(key, out)
                values(item, out)
        out.append(b"\x00")

    return write


def _double_map() -> FieldWriter:
    """A map of doubles: one ``struct`` call per record for a key set seen before (keys pre-encoded)."""
    formats: dict[tuple[str, ...], tuple[bytes, Callable[..., bytes], list[bytes]]] = {}
    generic = _map(_double)

    def write(value: Any, out: Out) -> None:
        if not isinstance(value, dict) or not value:
            generic(value, out)
            return
        keys = tuple(value)
        plan = formats.get(keys)
        if plan is None:
            if len(formats) >= _MAX_MAP_FORMATS or not all(type(k) is str for k in keys):
                generic(value, out)
                return
            encoded = [_string(k) for k in keys]
            fmt = struct.Struct("<" + "".join(f"{len(k)}sd" for k in encoded))
            plan = formats[keys] = (varint(len(keys)), fmt.pack, encoded)
        head, pack, encoded = plan
        args: list[Any] = []
        for key, item in zip(encoded, value.values(), strict=True):
            if type(item) is not float and type(item) is not int:
                msg = f"expected a float, got {type(item).__name__}"
                raise FieldTypeError(msg)
            args.append(key)
            args.append(item)
        out.append(head)
        out.append(pack(*args))
        out.append(b"\x00")

    return write


def _optional(null_first: bool, inner: FieldWriter) -> FieldWriter:
    null_tag, value_tag = (b"\x00", b"\x02") if null_first else (b"\x02", b"\x00")

    def write(value: Any, out: Out) -> None:
        if value is None:
            out.append(null_tag)
        else:
            out.append(value_tag)
            inner(value, out)

    return write


def _record(fields: list[tuple[str, Any, FieldWriter]], names: set[str]) -> FieldWriter:
    """``fields`` and ``names`` are filled after: a recursive type refers to its writer before it is complete."""

    def write(value: Any, out: Out) -> None:
        if not names.issuperset(value):  # fastavro refuses unknown fields
            unknown = sorted(set(value) - names)
            msg = f"fields not in the schema: {unknown}"
            raise FieldNameError(msg)
        for name, default, writer in fields:
            item = value.get(name, _MISSING)
            if item is _MISSING:
                if default is _MISSING:
                    raise FieldNameError(name)
                item = default
            writer(item, out)

    return write


def _writer(schema: Any, named: dict[str, FieldWriter]) -> FieldWriter:
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return _PRIMITIVES[schema]
        if schema in named:
            return named[schema]
        raise _Unsupported(schema)
    if isinstance(schema, list):
        branches = [b for b in schema if b != "null"]
        if len(schema) != 2 or len(branches) != 1:
            msg = f"union {schema!r}"
            raise _Unsupported(msg)
        return _optional(schema[0] == "null", _writer(branches[0], named))
    kind = schema["type"]
    logical = schema.get("logicalType")
    if logical is not None:
        if kind == "long" and logical == "timestamp-micros":
            return _timestamp(_US)
        if kind == "long" and logical == "timestamp-millis":
            return _timestamp(_MS)
        if kind == "string":
            return _str
        msg = f"logical type {logical!r}"
        raise _Unsupported(msg)
    if kind == "record":
        fields: list[tuple[str, Any, FieldWriter]] = []
        names: set[str] = set()
        writer = _record(fields, names)
        named[schema["name"]] = writer
        for field in schema["fields"]:
            default = field.get("default", _MISSING)
            fields.append((field["name"], default, _writer(field["type"], named)))
            names.add(field["name"])
        return writer
    if kind == "enum":
        named[schema["name"]] = writer = _enum(schema["symbols"])
        return writer
    if kind == "fixed":
        named[schema["name"]] = writer = _fixed(schema["size"])
        return writer
    if kind == "array":
        return _array(_writer(schema["items"], named))
    if kind == "map":
        return _double_map() if schema["values"] == "double" else _map(_writer(schema["values"], named))
    return _writer(kind, named)


def compile_writer(schema: Mapping[str, Any]) -> RecordWriter | None:
    """A function encoding a record of ``schema`` (fastavro's *parsed* form: names fully qualified), or ``None``
    when the schema uses something not covered."""
    try:
        write = _writer(dict(schema), {})
    except _Unsupported:
        return None

    def encode(record: Mapping[str, Any]) -> bytes:
        out: Out = []
        write(record, out)
        return b"".join(out)

    return encode
