"""The compiled Avro writer writes byte for byte what fastavro writes, and never accepts what fastavro would not."""

from __future__ import annotations

import io
import random
import string
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import fastavro
import pytest

from slipstream.schemas.compiled_writer import compile_writer, varint
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.exceptions import SerializationError
from slipstream.schemas.registry import SchemaRegistry
from tests.samples import sample

REGISTRY = SchemaRegistry.load()
CONTRACTS = Contracts.default()
LONGS = [0, -1, 1, 63, 64, -65, 1_700_000_000_000_000]
TOPIC_OF = {spec.value_schema: spec.name for spec in CONTRACTS.catalog if spec.value_schema}


def _parse(schema: Any) -> dict[str, Any]:
    parsed = fastavro.parse_schema(schema)
    assert isinstance(parsed, dict)
    return parsed


def _fastavro(schema: Any, record: Any) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, record, strict_allow_default=True)
    return buf.getvalue()


def _random_value(schema: Any, rng: random.Random, named: dict[str, Any]) -> Any:
    if isinstance(schema, list):
        return _random_value(rng.choice(schema), rng, named)
    if isinstance(schema, str):
        if schema in named:
            return _random_value(named[schema], rng, named)
        makers: dict[str, Callable[[], Any]] = {
            "null": lambda: None,
            "boolean": lambda: rng.random() < 0.5,
            "int": lambda: rng.randint(-(2**31), 2**31 - 1),
            "long": lambda: rng.choice(
                [0, -1, 1, 63, 64, -65, rng.randint(-(2**63), 2**63 - 1), 1_700_000_000_000_000]
            ),
            "float": lambda: rng.choice([0.0, 1.5, -2.25]),
            "double": lambda: rng.choice([0.0, rng.uniform(-1e9, 1e9), float("inf"), 3]),
            "string": lambda: "".join(rng.choices(string.printable + "éß€😀", k=rng.randint(0, 200))),
            "bytes": lambda: rng.randbytes(rng.randint(0, 40)),
        }
        return makers[schema]()
    kind = schema["type"]
    if kind == "record":
        named[schema["name"]] = schema
        return {f["name"]: _random_value(f["type"], rng, named) for f in schema["fields"]}
    if kind == "enum":
        named[schema["name"]] = schema
        return rng.choice(schema["symbols"])
    if kind == "fixed":
        named[schema["name"]] = schema
        return rng.randbytes(schema["size"])
    if kind == "array":
        return [_random_value(schema["items"], rng, named) for _ in range(rng.randint(0, 5))]
    if kind == "map":
        return {
            "".join(rng.choices(string.ascii_letters, k=rng.randint(1, 30))): _random_value(
                schema["values"], rng, named
            )
            for _ in range(rng.randint(0, 20))
        }
    return _random_value(kind, rng, named)


def _key(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_letters, k=rng.randint(1, 30)))


@pytest.mark.parametrize("name", sorted(REGISTRY.names()))
def test_every_contract_is_compiled_and_writes_what_fastavro_writes(name: str) -> None:
    schema = REGISTRY.get(name).parsed
    write = compile_writer(schema)
    assert write is not None, f"{name} should be covered by the compiled writer"
    rng = random.Random(name)
    records = [sample(name, i) for i in range(5)] + [_random_value(schema, rng, {}) for _ in range(300)]
    for record in records:
        assert write(record) == _fastavro(schema, record)
        trimmed = {k: v for k, v in record.items() if v is not None or rng.random() < 0.5}  # defaults fill the rest
        try:
            expected = _fastavro(schema, trimmed)
        except Exception:  # noqa: BLE001 - a field without a default is missing: the compiled writer must refuse it
            with pytest.raises(KeyError):
                write(trimmed)
        else:
            assert write(trimmed) == expected


def test_repeated_key_sets_of_a_double_map_pack_like_fastavro() -> None:
    schema = _parse(
        {"type": "record", "name": "R", "fields": [{"name": "m", "type": {"type": "map", "values": "double"}}]}
    )
    write = compile_writer(schema)
    assert write is not None
    for i in range(100):  # more key sets than the packed formats kept: the rest go key by key
        record = {"m": {f"k{i}": float(i), "feature_a": 1, "é": -0.5}}
        assert write(record) == write(record) == _fastavro(schema, record)


def test_timestamps_from_datetimes_and_defaults_for_missing_fields() -> None:
    schema = _parse(
        {
            "type": "record",
            "name": "T",
            "fields": [
                {"name": "us", "type": {"type": "long", "logicalType": "timestamp-micros"}},
                {"name": "ms", "type": {"type": "long", "logicalType": "timestamp-millis"}},
                {"name": "opt", "type": ["null", "string"], "default": None},
                {"name": "role", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}, "default": "B"},
            ],
        }
    )
    write = compile_writer(schema)
    assert write is not None
    when = datetime(2026, 11, 22, 7, 30, 1, 123456, tzinfo=UTC)
    for record in ({"us": when, "ms": when}, {"us": 5, "ms": -5, "opt": "x", "role": "A"}):
        assert write(record) == _fastavro(schema, record)


def _mutations(record: dict[str, Any], rng: random.Random) -> list[dict[str, Any]]:
    """``record`` with one field made wrong in a way a writer could silently accept."""
    out = [{**record, "not_in_the_schema": 1}]
    for name, value in record.items():
        for bad in (True, 2**40, "7", 1.5, None, [value], {"k": value}):
            if type(bad) is not type(value):
                out.append({**record, name: bad})
    rng.shuffle(out)
    return out[:60]


@pytest.mark.parametrize("name", sorted(REGISTRY.names()))
def test_the_compiled_writer_takes_nothing_fastavro_refuses(name: str) -> None:
    """For every wrong record: either fastavro refuses it too, or both write the same bytes."""
    schema = REGISTRY.get(name).parsed
    write = compile_writer(schema)
    assert write is not None
    rng = random.Random(f"mutate-{name}")
    for record in _mutations(sample(name, 2), rng):
        try:
            ours = write(record)
        except Exception:  # noqa: BLE001, S112 - refusing is always allowed: the serde falls back to fastavro
            continue
        assert ours == _fastavro(schema, record), f"{name}: compiled writer took {record!r}"


@pytest.mark.parametrize(
    "bad",
    [
        {"customer_id": "42"},  # text for a long
        {"customer_id": 4.0},  # a float for a long
        {"score": "0.5"},  # text for a double
        {"score": True},  # a bool for a double
        {"decision": 1},  # an int for a boolean
        {"role": "REFEREE"},  # not a symbol
        {"features": {"a": "x"}},
        {"features": {1: 0.5}},
        {"event_time": datetime(2026, 1, 1)},  # naive  # noqa: DTZ001
        {"customer_id": 2**63},  # out of range
        {"customer_id": True},  # a bool for a long (fastavro refuses one in a union)
        {"source_offset": False},  # ... as here
        {"feature_age": 1.0},  # a field the schema does not have (a misspelled one would be lost)
    ],
)
def test_the_compiled_writer_is_stricter_than_fastavro(bad: dict[str, Any]) -> None:
    record = {**sample("prediction", 1), **bad}
    write = compile_writer(REGISTRY.get("prediction").parsed)
    assert write is not None
    with pytest.raises((TypeError, KeyError, ValueError, OverflowError, AttributeError)):
        write(record)


def test_the_serde_falls_back_to_fastavro_for_its_explanation() -> None:
    serde = CONTRACTS.serde(TOPIC_OF["prediction"])
    record = {**sample("prediction", 1), "customer_id": "forty-two"}
    with pytest.raises(SerializationError, match="customer_id"):
        serde.encode(record)
    missing = sample("prediction", 1)
    del missing["score"]
    with pytest.raises(SerializationError, match="score"):
        serde.encode(missing)


def test_unsupported_schemas_are_left_to_fastavro() -> None:
    union = _parse({"type": "record", "name": "U", "fields": [{"name": "v", "type": ["int", "string"]}]})
    decimal = {"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 2}
    dec = _parse({"type": "record", "name": "D", "fields": [{"name": "v", "type": decimal}]})
    assert compile_writer(union) is None
    assert compile_writer(dec) is None


@pytest.mark.parametrize("n", [0, 1, -1, 63, -64, 64, 2**31, -(2**63), 2**63 - 1])
def test_varint_is_avro_zigzag(n: int) -> None:
    assert varint(n) == _fastavro("long", n)
