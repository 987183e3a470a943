"""Avro binary decoding compiled once per schema: the read-side twin of :mod:`~slipstream.schemas.compiled_writer`.

``fastavro.schemaless_reader`` walks the schema for every record: a prediction (twenty fields, four timestamps,
three maps of doubles) costs about 40 µs to decode, and the shadow consumer and the label joiner decode every
prediction, comparison and label. :func:`compile_reader` walks the schema once and generates the source of one
Python function per record type, every field read inline on a ``bytes`` buffer and a position (a one-byte varint,
enum symbol or union branch is one index; doubles are ``struct.unpack_from``), the record built as one dict literal
in field order. A map of doubles whose keys repeat (a model's feature names) is read with one ``struct`` call per
map once its key set has been seen, its keys checked byte for byte; a ``timestamp-micros`` (8 bytes for any time
from 1979 on) is four lookups in two 64 Ki-entry tables (~2 MB, built on first use) instead of a loop over bytes.
Generated code measured ~20% faster than the same readers as closures, one call per field (a prediction with 18
features: 11.2 µs against 13.6 µs; fastavro 33 µs).

It returns what fastavro returns for the same writer and reader schema: the same dict keys in the same order,
``datetime`` values with ``tzinfo=timezone.utc`` for ``timestamp-micros``/``timestamp-millis``, enum symbols as
strings, ``bytes`` for bytes and fixed (``tests/unit/schemas/test_compiled_reader.py`` compares them on every
contract). It covers primitives, records, enums, arrays, maps (negative block counts with byte sizes included),
fixed, unions and the two timestamp logical types; :func:`compile_reader` returns ``None`` for anything else (other
logical types: fastavro turns them into ``date``, ``UUID``, ``Decimal``...). Where fastavro is lenient with bad bytes
(a boolean byte other than 0 or 1, an ``int`` beyond 32 bits, a varint beyond 64 bits) the compiled reader raises,
as it does on truncated or corrupt bytes; :class:`~slipstream.schemas.serde.AvroSerde` then decodes with fastavro,
which returns its value or explains what is wrong. Schema resolution (writer and reader schemas differ) is
fastavro's alone.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from slipstream.schemas.exceptions import DecodeError

Buffer = bytes | memoryview
RecordReader = Callable[[Buffer], tuple[dict[str, Any], int]]
_Read = Callable[[bytes, int], tuple[Any, int]]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PAD = bytes(8)
_MAX_MAP_PLANS = 4  # packed layouts kept per entry count of a map of doubles; beyond that, entry by entry


class _Unsupported(Exception):
    """The schema uses something the compiled reader does not cover: use fastavro."""


def read_long(buf: bytes, pos: int) -> tuple[int, int]:
    """The zig-zag varint (Avro ``int``/``long``) at ``pos`` and the position after it."""
    b = buf[pos]
    n = b & 0x7F
    shift = 7
    pos += 1
    while b & 0x80:
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
    if n >> 64:
        msg = f"varint of {shift // 7} bytes does not fit in a long"
        raise DecodeError(msg)
    return (n >> 1) ^ -(n & 1), pos


def _read_int(buf: bytes, pos: int) -> tuple[int, int]:
    n, pos = read_long(buf, pos)
    if not -(2**31) <= n < 2**31:
        msg = f"{n} does not fit in an int"
        raise DecodeError(msg)
    return n, pos


def _read_length(buf: bytes, pos: int) -> tuple[int, int]:
    n, pos = read_long(buf, pos)
    if n < 0:
        msg = f"negative length {n}"
        raise DecodeError(msg)
    return n, pos


def _read_count(buf: bytes, pos: int) -> tuple[int, int]:
    """An array or map block count; a negative count is followed by the block's size in bytes (skipped)."""
    n, pos = read_long(buf, pos)
    if n < 0:
        _, pos = _read_length(buf, pos)
        return -n, pos
    return n, pos


def _read_enum(symbols: tuple[str, ...]) -> Callable[[bytes, int], tuple[str, int]]:
    def read(buf: bytes, pos: int) -> tuple[str, int]:
        i, pos = read_long(buf, pos)
        if not 0 <= i < len(symbols):
            msg = f"enum index {i} out of range"
            raise DecodeError(msg)
        return symbols[i], pos

    return read


def _generic_double_map(buf: bytes, pos: int) -> tuple[dict[str, float], int]:
    out: dict[str, float] = {}
    unpack = _DOUBLE
    while True:
        n, pos = _read_count(buf, pos)
        if not n:
            return out, pos
        for _ in range(n):
            size, pos = _read_length(buf, pos)
            end = pos + size
            key = buf[pos:end].decode()
            (out[key],) = unpack(buf, end)
            pos = end + 8


_DOUBLE = struct.Struct("<d").unpack_from
_FLOAT = struct.Struct("<f").unpack_from


def _double_map() -> _Read:
    """A map of doubles: an entry count seen before with the same keys is read with one ``struct`` call.

    A plan is the packed layout of one key set (each key with its length prefix as a fixed-size string, then its
    double); a block matches it when every unpacked key equals the plan's bytes, which also proves the layout.
    """
    plans: dict[int, list[tuple[Callable[[bytes, int], tuple[Any, ...]], int, tuple[bytes, ...], tuple[str, ...]]]]
    plans = {}

    def read(buf: bytes, pos: int) -> tuple[dict[str, float], int]:
        b = buf[pos]
        if b >= 0x80 or b & 1 or not b:  # a long or negative count, or the empty map
            return _generic_double_map(buf, pos)
        candidates = plans.get(b)
        if candidates is not None:
            for unpack, size, raw, keys in candidates:
                end = pos + 1 + size
                if end < len(buf):
                    values = unpack(buf, pos + 1)
                    if values[0::2] == raw and buf[end] == 0:
                        return dict(zip(keys, values[1::2], strict=True)), end + 1
        out, end = _generic_double_map(buf, pos)
        count = b >> 1
        if len(out) == count and len(plans.get(b, ())) < _MAX_MAP_PLANS:
            raw = tuple(bytes((len(k) << 1,)) + k if len(k) < 64 else b"" for k in (k.encode() for k in out))
            if all(raw):
                fmt = struct.Struct("<" + "".join(f"{len(r)}sd" for r in raw))
                if 2 + fmt.size == end - pos:  # one block of ``count`` entries, nothing else
                    plans.setdefault(b, []).append((fmt.unpack_from, fmt.size, raw, tuple(out)))
        return out, end

    return read


def _double_map_skip() -> Callable[[bytes, int], int]:
    """Walks past a map of doubles, returning the position after it: an entry count seen before with the same
    keys is one ``struct`` call (the keys unpacked and compared, the doubles jumped over)."""
    plans: dict[int, list[tuple[Callable[[bytes, int], tuple[Any, ...]], int, tuple[bytes, ...]]]] = {}

    def skip(buf: bytes, pos: int) -> int:
        b = buf[pos]
        if b >= 0x80 or b & 1 or not b:  # a long or negative count, or the empty map
            return _generic_double_map(buf, pos)[1]
        for unpack, size, raw in plans.get(b, ()):
            end = pos + 1 + size
            if end < len(buf) and unpack(buf, pos + 1) == raw and buf[end] == 0:
                return end + 1
        out, end = _generic_double_map(buf, pos)
        if len(out) == b >> 1 and len(plans.get(b, ())) < _MAX_MAP_PLANS:
            raw = tuple(bytes((len(k) << 1,)) + k if len(k) < 64 else b"" for k in (k.encode() for k in out))
            if all(raw):
                fmt = struct.Struct("<" + "".join(f"{len(r)}s8x" for r in raw))
                if 2 + fmt.size == end - pos:
                    plans.setdefault(b, []).append((fmt.unpack_from, fmt.size, raw))
        return end

    return skip


@functools.cache
def _pair_tables() -> tuple[list[int], list[int]]:
    """Two varint bytes (little-endian ``H``) to their 14 bits: ``[0]`` both continue, ``[1]`` the second ends the
    varint; any other pair maps to a value with bit 56 set once shifted (no 8-byte varint ends there)."""
    bad = 1 << 56
    both = [(p & 0x7F) | (p >> 1 & 0x3F80) if p & 0x8080 == 0x8080 else bad for p in range(65536)]
    last = [(p & 0x7F) | (p >> 1 & 0x3F80) if p & 0x8080 == 0x0080 else bad for p in range(65536)]
    return both, last


class _Generator:
    """Writes the source of one reader function per record type; ``ns`` holds what the source refers to."""

    def __init__(self) -> None:
        self.ns: dict[str, Any] = {
            "_Corrupt": DecodeError,
            "_varint": read_long,
            "_int": _read_int,
            "_length": _read_length,
            "_count": _read_count,
            "_EPOCH": _EPOCH,
            "_td": timedelta,
            "_D": _DOUBLE,
            "_F": _FLOAT,
            "_4H": struct.Struct("<4H").unpack_from,
            "_BOOL": (False, True),
        }
        self.functions: list[str] = []
        self.named: dict[str, Any] = {}
        self.records: dict[str, str] = {}
        self.micros = False  # timestamps of the field being emitted as epoch microseconds (a projection's option)
        self.n = 0

    def name(self, prefix: str, value: Any = None) -> str:
        self.n += 1
        name = f"{prefix}{self.n}"
        if value is not None:
            self.ns[name] = value
        return name

    def record(self, schema: Mapping[str, Any], keep: frozenset[str] | None = None, micros: bool = False) -> str:
        """The name of the function reading a record of ``schema`` (generated on first sight). For the root record a
        projection: only the fields in ``keep`` (all when None) are returned, the others' bytes are walked past;
        with ``micros`` its timestamps are returned as epoch microseconds."""
        fn = self.name("_record_")
        self.records[schema["name"]] = fn
        self.named[schema["name"]] = schema
        body: list[str] = []
        targets = []
        outer = self.micros
        for field in schema["fields"]:
            if keep is not None and field["name"] not in keep:
                self.micros = False
                self.skip(field["type"], body, 1)
                continue
            target = self.name("v")
            self.micros = micros
            self.emit(field["type"], target, body, 1)
            targets.append(f"{field['name']!r}: {target}")
        self.micros = outer
        body.append(f"    return {{{', '.join(targets)}}}, pos")
        self.functions.append(f"def {fn}(buf, pos):\n" + "\n".join(body))
        return fn

    def emit(self, schema: Any, t: str, out: list[str], depth: int) -> None:
        """Append the lines reading one value of ``schema`` into the local ``t``, advancing ``pos``."""
        pad = "    " * depth

        def put(*lines: str) -> None:
            out.extend(pad + line for line in lines)

        if isinstance(schema, list):
            self.union(schema, t, out, depth)
            return
        if isinstance(schema, str) and schema in self.named:
            if schema in self.records:
                put(f"{t}, pos = {self.records[schema]}(buf, pos)")
                return
            schema = self.named[schema]
        if isinstance(schema, Mapping):
            kind = schema["type"]
            if isinstance(kind, list | Mapping):
                self.emit(kind, t, out, depth)
                return
            logical = schema.get("logicalType")
            if logical is not None:
                if kind != "long" or logical not in ("timestamp-micros", "timestamp-millis"):
                    msg = f"logical type {logical!r} on {kind!r}"
                    raise _Unsupported(msg)
                if logical == "timestamp-micros":  # 8 bytes from 1979 to 3110: two table lookups per 4 bytes
                    self.ns["_TC"], self.ns["_TE"] = _pair_tables()
                    put("a, b, c, d = _4H(buf, pos)", "n = _TC[a] | _TC[b] << 14 | _TC[c] << 28 | _TE[d] << 42")
                    put("if n >> 56:", "    n, pos = _varint(buf, pos)", "else:", "    n = (n >> 1) ^ -(n & 1)")
                    put("    pos += 8", f"{t} = n" if self.micros else f"{t} = _EPOCH + _td(0, 0, n)")
                elif self.micros:
                    put("n, pos = _varint(buf, pos)", f"{t} = n * 1000")
                else:
                    put("n, pos = _varint(buf, pos)", f"{t} = _EPOCH + _td(0, 0, n * 1000)")
                return
            if kind == "record":
                put(f"{t}, pos = {self.record(schema)}(buf, pos)")
            elif kind == "enum":
                self.named[schema["name"]] = schema
                self.enum(schema, t, put)
            elif kind == "fixed":
                self.named[schema["name"]] = schema
                put(f"end = pos + {int(schema['size'])}", "if end > len(buf):", "    raise _Corrupt('truncated fixed')")
                put(f"{t} = buf[pos:end]", "pos = end")
            elif kind == "array":
                self.blocks(schema["items"], t, out, depth, "[]", "{t}.append({v})")
            elif kind == "map":
                if schema["values"] == "double":
                    reader = self.name("_map_", _double_map())
                    put("if buf[pos] == 0:", f"    {t} = {{}}", "    pos += 1", "else:")
                    put(f"    {t}, pos = {reader}(buf, pos)")
                else:
                    self.blocks(schema["values"], t, out, depth, "{}", "{t}[{k}] = {v}")
            else:
                self.emit(kind, t, out, depth)
            return
        self.primitive(schema, t, put)

    def skip(self, schema: Any, out: list[str], depth: int) -> None:
        """Append the lines walking past one value of ``schema`` (a field a projection leaves out): lengths, counts
        and union branches are read, no value is built (a nested record is read and dropped)."""
        pad = "    " * depth

        def put(*lines: str) -> None:
            out.extend(pad + line for line in lines)

        def nested(item: Any) -> None:
            before = len(out)
            self.skip(item, out, depth + 1)
            if len(out) == before:
                put("    pass")

        if isinstance(schema, list):
            if len(schema) > 64:
                msg = f"union of {len(schema)} branches"
                raise _Unsupported(msg)
            put("b = buf[pos]", "pos += 1")
            for i, branch in enumerate(schema):
                put(f"{'if' if i == 0 else 'elif'} b == {2 * i}:")
                nested(branch)
            put("else:", "    raise _Corrupt(f'union index byte {b} out of range')")
            return
        if isinstance(schema, str) and schema in self.named:
            if schema in self.records:
                put(f"_, pos = {self.records[schema]}(buf, pos)")
                return
            schema = self.named[schema]
        if not isinstance(schema, Mapping):
            self.skip_primitive(schema, put)
            return
        kind = schema["type"]
        if isinstance(kind, list | Mapping):
            self.skip(kind, out, depth)
            return
        logical = schema.get("logicalType")
        if logical is not None:
            if kind != "long" or logical not in ("timestamp-micros", "timestamp-millis"):
                msg = f"logical type {logical!r} on {kind!r}"
                raise _Unsupported(msg)
            if logical == "timestamp-micros":  # 8 bytes from 1979 to 3110: seven continue, the eighth ends it
                self.ns["_TC"], self.ns["_TE"] = _pair_tables()
                put("a, b, c, d = _4H(buf, pos)", "if (_TC[a] | _TC[b] | _TC[c] | _TE[d]) >> 56:")
                put("    _, pos = _varint(buf, pos)", "else:", "    pos += 8")
            else:
                self.skip_primitive("long", put)
        elif kind == "record":
            put(f"_, pos = {self.record(schema)}(buf, pos)")
        elif kind == "enum":
            self.named[schema["name"]] = schema
            self.skip_primitive("long", put)
        elif kind == "fixed":
            self.named[schema["name"]] = schema
            put(f"pos += {int(schema['size'])}")
        elif kind == "map" and schema["values"] == "double":
            put(f"pos = {self.name('_skip_map_', _double_map_skip())}(buf, pos)")
        elif kind in ("array", "map"):
            put("while True:", "    c, pos = _varint(buf, pos)", "    if not c:", "        break", "    if c < 0:")
            put("        size, pos = _length(buf, pos)", "        pos += size", "        continue")
            put("    for _ in range(c):")
            if kind == "map":
                self.skip("string", out, depth + 2)
            before = len(out)
            self.skip(schema["items" if kind == "array" else "values"], out, depth + 2)
            if len(out) == before:
                put("        pass")
        else:
            self.skip(kind, out, depth)

    def skip_primitive(self, kind: Any, put: Callable[..., None]) -> None:
        if kind == "null":
            return
        if kind == "boolean":
            put("pos += 1")
        elif kind in ("int", "long"):
            put("if buf[pos] < 0x80:", "    pos += 1", "else:", "    _, pos = _varint(buf, pos)")
        elif kind in ("float", "double"):
            put(f"pos += {8 if kind == 'double' else 4}")
        elif kind in ("string", "bytes"):
            put("n = buf[pos]", "if n < 0x80 and not n & 1:", "    pos += 1 + (n >> 1)", "else:")
            put("    n, pos = _length(buf, pos)", "    pos += n")
        else:
            msg = f"type {kind!r}"
            raise _Unsupported(msg)

    def primitive(self, kind: Any, t: str, put: Callable[..., None]) -> None:
        if kind == "null":
            put(f"{t} = None")
        elif kind == "boolean":
            put(f"{t} = _BOOL[buf[pos]]", "pos += 1")
        elif kind in ("int", "long"):
            slow = "_varint" if kind == "long" else "_int"
            put("b = buf[pos]", "if b < 0x80:", f"    {t} = (b >> 1) ^ -(b & 1)", "    pos += 1", "else:")
            put(f"    {t}, pos = {slow}(buf, pos)")
        elif kind in ("float", "double"):
            unpack, size = ("_D", 8) if kind == "double" else ("_F", 4)
            put(f"({t},) = {unpack}(buf, pos)", f"pos += {size}")
        elif kind in ("string", "bytes"):
            put("n = buf[pos]", "if n < 0x80 and not n & 1:", "    n >>= 1", "    pos += 1", "else:")
            put("    n, pos = _length(buf, pos)", "end = pos + n")
            put(f"{t} = buf[pos:end].decode()" if kind == "string" else f"{t} = buf[pos:end]", "pos = end")
        else:
            msg = f"type {kind!r}"
            raise _Unsupported(msg)

    def enum(self, schema: Mapping[str, Any], t: str, put: Callable[..., None]) -> None:
        symbols = tuple(schema["symbols"])
        if len(symbols) <= 64:  # every index is one byte: the byte itself finds the symbol
            table = self.name("_enum_", {2 * i: s for i, s in enumerate(symbols)})
            put(f"{t} = {table}[buf[pos]]", "pos += 1")
        else:
            reader = self.name("_enum_", _read_enum(symbols))
            put(f"{t}, pos = {reader}(buf, pos)")

    def union(self, branches: list[Any], t: str, out: list[str], depth: int) -> None:
        pad = "    " * depth
        if len(branches) > 64:
            msg = f"union of {len(branches)} branches"
            raise _Unsupported(msg)
        out.append(f"{pad}b = buf[pos]")
        out.append(f"{pad}pos += 1")
        for i, branch in enumerate(branches):
            out.append(f"{pad}{'if' if i == 0 else 'elif'} b == {2 * i}:")
            self.emit(branch, t, out, depth + 1)
        out.append(f"{pad}else:")
        out.append(f"{pad}    raise _Corrupt(f'union index byte {{b}} out of range')")

    def blocks(self, item: Any, t: str, out: list[str], depth: int, empty: str, store: str) -> None:
        """An array or map: blocks of items until a zero count."""
        pad = "    " * depth
        v = self.name("v")
        k = self.name("k")
        out.append(f"{pad}{t} = {empty}")
        out.append(f"{pad}while True:")
        out.append(f"{pad}    c, pos = _count(buf, pos)")
        out.append(f"{pad}    if not c:")
        out.append(f"{pad}        break")
        out.append(f"{pad}    for _ in range(c):")
        if empty == "{}":
            self.emit("string", k, out, depth + 2)
        self.emit(item, v, out, depth + 2)
        out.append(f"{pad}        {store.format(t=t, k=k, v=v)}")


def compile_reader(
    schema: Mapping[str, Any], fields: Collection[str] | None = None, *, micros: bool = False
) -> RecordReader | None:
    """A function decoding a record of ``schema`` (fastavro's *parsed* form: names fully qualified) from Avro
    binary, returning the record and the number of bytes it used; ``None`` when the schema uses something not
    covered. The function raises (``DecodeError``, ``IndexError``, ``KeyError``, ``struct.error``,
    ``UnicodeDecodeError``...) on bytes that are not a record of ``schema``.

    A projection: with ``fields``, the record holds only the top-level fields named (in schema order); the bytes of
    the others are walked past without building their values (a string is not decoded, a map of doubles not turned
    into a dict), so bad bytes inside a skipped field may go unnoticed — its length and structure are still read,
    and the length used is the record's. With ``micros``, the kept top-level timestamps (``timestamp-micros`` and
    ``-millis``, also inside a union) are epoch microseconds (``int``), not ``datetime``."""
    if schema.get("type") != "record":
        return None
    generator = _Generator()
    try:
        root = generator.record(schema, None if fields is None else frozenset(fields), micros)
    except _Unsupported:
        return None
    source = "\n\n".join(generator.functions)
    # The source is built from this module's templates only: schema names appear in it as repr() literals.
    exec(compile(source, f"<compiled reader of {schema['name']}>", "exec"), generator.ns)  # noqa: S102
    read_root: _Read = generator.ns[root]

    def decode(data: Buffer) -> tuple[dict[str, Any], int]:
        buf = b"".join((data, _PAD))  # one copy; the padding lets a timestamp's 8 bytes be unpacked at the end
        record, pos = read_root(buf, 0)
        if pos > len(data):  # a read went into the padding: the body is truncated
            msg = f"record needs {pos} bytes, the body has {len(data)}"
            raise DecodeError(msg)
        return record, pos

    return decode
