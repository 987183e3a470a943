"""The compiled Avro reader returns exactly what fastavro returns, and the serde's errors on bad bytes are unchanged."""

from __future__ import annotations

import copy
import io
import random
import struct
from datetime import UTC, datetime
from typing import Any

import fastavro
import pytest

from slipstream.schemas.compiled_reader import compile_reader, read_long
from slipstream.schemas.compiled_writer import varint
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.exceptions import DecodeError
from slipstream.schemas.registry import SchemaRegistry, SchemaVersion
from tests.samples import sample
from tests.unit.schemas.test_compiled_writer import _random_value

REGISTRY = SchemaRegistry.load()
CONTRACTS = Contracts.default()
TOPIC_OF = {spec.value_schema: spec.name for spec in CONTRACTS.catalog if spec.value_schema}
VERSIONS = sorted(REGISTRY.all_versions(), key=lambda v: (v.name, v.version))


def _parse(schema: Any) -> dict[str, Any]:
    parsed = fastavro.parse_schema(schema, _write_hint=False)
    assert isinstance(parsed, dict)
    return parsed


def _encode(schema: Any, record: Any) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, record)
    return buf.getvalue()


def _fastavro(schema: Any, body: bytes) -> tuple[Any, int]:
    stream = io.BytesIO(body)
    record = fastavro.schemaless_reader(stream, schema, None)
    return record, stream.tell()


def assert_same(ours: Any, theirs: Any, where: str = "record") -> None:
    """Equal values of the same types, dict keys in the same order, floats bit for bit, the same tzinfo object."""
    assert type(ours) is type(theirs), f"{where}: {type(ours).__name__} != {type(theirs).__name__}"
    if isinstance(theirs, dict):
        assert list(ours) == list(theirs), f"{where}: keys {list(ours)} != {list(theirs)}"
        for key in theirs:
            assert_same(ours[key], theirs[key], f"{where}.{key}")
    elif isinstance(theirs, list):
        assert len(ours) == len(theirs), f"{where}: {len(ours)} items != {len(theirs)}"
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(theirs, float):
        assert struct.pack("<d", ours) == struct.pack("<d", theirs), f"{where}: {ours!r} != {theirs!r}"
    elif isinstance(theirs, datetime):
        assert ours == theirs, f"{where}: {ours!r} != {theirs!r}"
        assert ours.tzinfo is theirs.tzinfo, f"{where}: tzinfo {ours.tzinfo!r} != {theirs.tzinfo!r}"
    else:
        assert ours == theirs, f"{where}: {ours!r} != {theirs!r}"


def _records(version: SchemaVersion, rng: random.Random, n: int) -> list[Any]:
    """The contract's samples (when they fit this version) and random records of the schema."""
    records: list[Any] = []
    if version.version == 0:
        records += [sample(version.name, i) for i in range(6)]
    if version.name == "prediction" and version.version == 0:
        many = {f"FEATURE_{i}_WINDOW": i / 7 for i in range(18)}
        records += [{**sample("prediction", i), "features": many} for i in range(3)]
        records.append({**sample("prediction", 1), "features": {}, "feature_freshness": {}, "timings_us": {}})
    return records + [_random_value(version.parsed, rng, {}) for _ in range(n)]


def _check(read: Any, schema: Any, body: bytes, *, valid: bool = True) -> None:
    """Decoding ``body`` compiled gives fastavro's record and length, and fails where fastavro fails. On bytes that
    are not ``valid`` the compiled reader may also refuse what fastavro reads leniently (a negative enum index, a
    boolean byte of 5): the serde then decodes them with fastavro."""
    try:
        expected = _fastavro(schema, body)
    except Exception:  # noqa: BLE001 - fastavro refuses: the compiled reader must not make up a record
        with pytest.raises(Exception):  # noqa: B017 - any error: the serde then asks fastavro
            read(body)
        return
    try:
        record, used = read(body)
    except Exception:
        if valid:
            raise
        return
    assert used == expected[1]
    assert_same(record, expected[0])


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"{v.name}-v{v.version}")
def test_every_contract_version_is_compiled_and_reads_what_fastavro_reads(version: SchemaVersion) -> None:
    schema = version.parsed
    read = compile_reader(schema)
    assert read is not None, f"{version.name} v{version.version} should be covered by the compiled reader"
    rng = random.Random(f"{version.name}-{version.version}")
    for record in _records(version, rng, 200):
        body = _encode(schema, record)
        _check(read, schema, body)
        _check(read, schema, body + b"\x00trailing")  # the length used excludes what follows
        try:
            expected = read(body)
        except Exception:  # noqa: BLE001, S112 - refused as fastavro refuses it (checked above)
            continue
        view = read(memoryview(b"xx" + body + b"yy")[2:])  # the framing hands the body over as a memoryview
        assert view[1] == expected[1]
        assert_same(view[0], expected[0])


@pytest.mark.parametrize("name", sorted(REGISTRY.names()))
def test_truncated_and_corrupt_bodies_are_refused_or_read_as_fastavro_reads_them(name: str) -> None:
    schema = REGISTRY.get(name).parsed
    read = compile_reader(schema)
    assert read is not None
    rng = random.Random(f"corrupt-{name}")
    for i in range(4):
        body = _encode(schema, sample(name, i))
        for end in range(len(body)):
            _check(read, schema, body[:end], valid=False)
        for _ in range(150):
            bad = bytearray(body)
            for _ in range(rng.randint(1, 3)):
                bad[rng.randrange(len(bad))] = rng.randrange(256)
            _check(read, schema, bytes(bad), valid=False)


@pytest.mark.parametrize("name", sorted(REGISTRY.names()))
def test_the_serde_decodes_compiled_and_keeps_fastavros_errors(name: str) -> None:
    serde = CONTRACTS.serde(TOPIC_OF[name])
    reference = copy.copy(serde)
    reference._reader = None  # the serde as it was: fastavro alone
    rng = random.Random(f"serde-{name}")
    data = serde.encode(sample(name, 2))
    assert_same(serde.decode(data), reference.decode(data))
    header = len(data) - len(_encode(serde.schema.parsed, sample(name, 2)))
    cases = [data[:end] for end in range(header, len(data))] + [data + b"\x00", data + b"\x01\x02"]
    for _ in range(100):
        bad = bytearray(data)
        bad[rng.randrange(header, len(bad))] = rng.randrange(256)
        cases.append(bytes(bad))
    for case in cases:
        ours, theirs = _outcome(serde, case), _outcome(reference, case)
        if isinstance(theirs, tuple):
            assert ours == theirs
        else:
            assert_same(ours, theirs)


def _outcome(serde: Any, data: bytes) -> Any:
    try:
        return serde.decode(data)
    except DecodeError as exc:
        return (type(exc), str(exc), exc.error_type)


@pytest.mark.parametrize("version", [v for v in VERSIONS if v.version > 0], ids=lambda v: f"{v.name}-v{v.version}")
def test_records_written_with_a_released_version_are_resolved_by_fastavro(version: SchemaVersion) -> None:
    serde = CONTRACTS.serde(TOPIC_OF[version.name])
    reference = copy.copy(serde)
    reference._reader = None
    rng = random.Random(f"released-{version.name}-{version.version}")
    for _ in range(20):
        data = b"\xc3\x01" + version.fingerprint + _encode(version.parsed, _random_value(version.parsed, rng, {}))
        ours, theirs = _outcome(serde, data), _outcome(reference, data)
        if isinstance(theirs, tuple):
            assert ours == theirs
        else:
            assert_same(ours, theirs)


def test_maps_of_doubles_in_blocks_with_byte_sizes_and_changing_key_sets() -> None:
    schema = _parse(
        {"type": "record", "name": "R", "fields": [{"name": "m", "type": {"type": "map", "values": "double"}}]}
    )
    read = compile_reader(schema)
    assert read is not None
    for i in range(300):  # more key sets than the packed layouts kept per entry count
        record = {"m": {f"k{i % 37}": float(i), "feature_a": 1.0, "é": -0.5}}
        body = _encode(schema, record)
        assert_same(read(body)[0], record)
        assert_same(read(body)[0], record)
    entry = varint(len(b"ab")) + b"ab" + struct.pack("<d", 2.5)
    blocked = varint(-2) + varint(2 * len(entry)) + entry + entry.replace(b"ab", b"cd") + varint(1) + entry + b"\x00"
    assert_same(read(blocked)[0], _fastavro(schema, blocked)[0])
    assert read(blocked) == ({"m": {"ab": 2.5, "cd": 2.5}}, len(blocked))
    duplicate = varint(2) + entry + entry + b"\x00"
    assert_same(read(duplicate)[0], _fastavro(schema, duplicate)[0])
    assert_same(read(duplicate)[0], _fastavro(schema, duplicate)[0])  # a duplicate key is never learned as a layout


def test_general_unions_nested_records_arrays_fixed_and_timestamps() -> None:
    schema = _parse(
        {
            "type": "record",
            "name": "Node",
            "fields": [
                {"name": "v", "type": ["int", "string", "null", {"type": "fixed", "name": "F", "size": 3}]},
                {"name": "f", "type": ["null", "F"]},
                {"name": "children", "type": {"type": "array", "items": "Node"}},
                {"name": "ms", "type": {"type": "long", "logicalType": "timestamp-millis"}},
                {"name": "us", "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}]},
                {"name": "e", "type": {"type": "enum", "name": "E", "symbols": [f"S{i}" for i in range(70)]}},
                {"name": "by", "type": {"type": "map", "values": ["null", "E"]}},
                {"name": "x", "type": "float"},
            ],
        }
    )
    read = compile_reader(schema)
    assert read is not None
    when = datetime(2026, 11, 22, 7, 30, 1, 123000, tzinfo=UTC)
    leaf = {"v": b"abc", "f": b"xyz", "children": [], "ms": when, "us": None, "e": "S69", "by": {}, "x": 1.5}
    root: dict[str, Any] = {"v": -5, "f": None, "children": [leaf, {**leaf, "v": "é"}], "ms": -1, "us": when}
    root |= {"e": "S3", "by": {"a": None, "b": "S65"}, "x": -2.25}
    for record in (leaf, root):
        body = _encode(schema, record)
        assert_same(read(body)[0], _fastavro(schema, body)[0])
    for ts in (0, -1, 1, 2**47, -(2**55), 2**55, 253402300799999999, 1_700_000_000_000_000):
        body = _encode(schema, {**leaf, "us": ts})
        _check(read, schema, body)


def test_schemas_with_other_logical_types_are_left_to_fastavro() -> None:
    for logical in (
        {"type": "int", "logicalType": "date"},
        {"type": "string", "logicalType": "uuid"},
        {"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 2},
        {"type": "long", "logicalType": "local-timestamp-micros"},
        {"type": "long", "logicalType": "time-micros"},
    ):
        assert (
            compile_reader(_parse({"type": "record", "name": "L", "fields": [{"name": "v", "type": logical}]})) is None
        )


@pytest.mark.parametrize("n", [0, 1, -1, 63, -64, 64, 2**31, -(2**63), 2**63 - 1, 1_522_540_930_123_456])
def test_read_long_is_avro_zigzag(n: int) -> None:
    data = varint(n)
    assert read_long(data + b"\xff", 0) == (n, len(data))


def test_lenient_fastavro_readings_are_refused_so_the_serde_asks_fastavro() -> None:
    schema = _parse({"type": "record", "name": "B", "fields": [{"name": "b", "type": "boolean"}]})
    read = compile_reader(schema)
    assert read is not None
    assert _fastavro(schema, b"\x05") == ({"b": True}, 1)
    with pytest.raises(IndexError):
        read(b"\x05")
