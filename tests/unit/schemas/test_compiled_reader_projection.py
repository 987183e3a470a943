"""A projection (some top-level fields, timestamps as epoch microseconds) reads exactly fastavro's record cut down to
those fields, uses the same number of bytes, and the serde's projection falls back to fastavro as the full decode."""

from __future__ import annotations

import copy
import random
from datetime import datetime
from typing import Any

import pytest

from slipstream.schemas.compiled_reader import compile_reader
from slipstream.schemas.exceptions import DecodeError, SchemaError
from slipstream.schemas.registry import SchemaVersion
from tests.unit.schemas.test_compiled_reader import (
    CONTRACTS,
    REGISTRY,
    TOPIC_OF,
    VERSIONS,
    _encode,
    _fastavro,
    _parse,
    _records,
    assert_same,
)
from tests.unit.schemas.test_compiled_writer import _random_value

US = 1_000_000


def _micros(value: Any) -> Any:
    if isinstance(value, datetime):
        delta = value - datetime(1970, 1, 1, tzinfo=value.tzinfo)
        return (delta.days * 86_400 + delta.seconds) * US + delta.microseconds
    return value


def _cut(record: dict[str, Any], keep: list[str], timestamps: set[str]) -> dict[str, Any]:
    return {name: _micros(record[name]) if name in timestamps else record[name] for name in keep}


def _timestamps(schema: dict[str, Any]) -> set[str]:
    def is_ts(t: Any) -> bool:
        return isinstance(t, dict) and str(t.get("logicalType", "")).startswith("timestamp")

    out = set()
    for field in schema["fields"]:
        types = field["type"] if isinstance(field["type"], list) else [field["type"]]
        if any(is_ts(t) for t in types):
            out.add(field["name"])
    return out


def _subsets(names: list[str], rng: random.Random) -> list[list[str]]:
    picks = [[], names, [names[0]], [names[-1]]]
    picks += [[n for n in names if rng.random() < 0.5] for _ in range(8)]
    return picks


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"{v.name}-v{v.version}")
def test_every_projection_of_every_contract_reads_fastavros_record_cut_down(version: SchemaVersion) -> None:
    schema = version.parsed
    names = [f["name"] for f in schema["fields"]]
    rng = random.Random(f"projection-{version.name}-{version.version}")
    timestamps = _timestamps(schema)
    records = _records(version, rng, 60)
    for keep in _subsets(names, rng):
        read = compile_reader(schema, keep, micros=True)
        plain = compile_reader(schema, keep)
        assert read is not None and plain is not None
        for record in records:
            body = _encode(schema, record)
            try:
                expected, used = _fastavro(schema, body)
            except OverflowError:  # a time fastavro cannot make a datetime of: nothing to compare with
                continue
            got, got_used = read(body + b"\x00trailing")
            assert got_used == used
            assert_same(got, _cut(expected, keep, timestamps))
            assert_same(plain(body)[0], {n: expected[n] for n in keep})  # without micros: datetimes as fastavro's


def test_a_truncated_body_is_refused_by_a_projection_that_skips_its_end() -> None:
    schema = REGISTRY.get("prediction").parsed
    read = compile_reader(schema, ["prediction_id"], micros=True)
    assert read is not None
    body = _encode(schema, {**CONTRACTS_SAMPLE, "features": {f"F{i}": i / 3 for i in range(18)}})
    for _ in range(2):  # the second time the feature map's layout is known
        assert read(body)[1] == len(body)
    for end in range(1, len(body)):
        try:
            _, used = read(body[:end])
        except Exception:  # noqa: BLE001, S112 - refused: the serde then asks fastavro, which explains
            continue
        msg = f"a body cut at {end} of {len(body)} bytes read as {used} bytes"
        raise AssertionError(msg)


def test_skipped_maps_in_blocks_unions_records_and_arrays() -> None:
    schema = _parse(
        {
            "type": "record",
            "name": "Skip",
            "fields": [
                {"name": "m", "type": {"type": "map", "values": "double"}},
                {"name": "f", "type": {"type": "fixed", "name": "F", "size": 3}},
                {"name": "u", "type": ["null", "string", "F", "float"]},
                {"name": "inner", "type": {"type": "record", "name": "In", "fields": [{"name": "x", "type": "long"}]}},
                {"name": "a", "type": {"type": "array", "items": ["null", "In"]}},
                {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}},
                {"name": "ms", "type": {"type": "long", "logicalType": "timestamp-millis"}},
                {"name": "us", "type": {"type": "long", "logicalType": "timestamp-micros"}},
                {"name": "f2", "type": "F"},
                {"name": "again", "type": "E"},
                {"name": "last", "type": "string"},
            ],
        }
    )
    skip_all_but_last = compile_reader(schema, ["again", "last", "ms"], micros=True)
    assert skip_all_but_last is not None
    rng = random.Random("skips")
    for i in range(200):
        record = _random_value(schema, rng, {})
        if i % 3 == 0:
            record["m"] = {"k1": 1.0, "k2": 2.0}
        if i % 5 == 0:
            record["us"] = rng.choice([0, -1, 2**60, 1_767_225_600_000_000, -(2**62)])
        body = _encode(schema, record)
        try:
            expected, used = _fastavro(schema, body)
        except OverflowError:  # a time fastavro cannot make a datetime of: nothing to compare with
            continue
        got = skip_all_but_last(body)
        assert got[1] == used
        assert_same(got[0], {"ms": _micros(expected["ms"]), "again": expected["again"], "last": expected["last"]})


@pytest.mark.parametrize("name", sorted(REGISTRY.names()))
def test_the_serde_projection_decodes_as_fastavro_and_keeps_its_errors(name: str) -> None:
    serde = CONTRACTS.serde(TOPIC_OF[name])
    schema = serde.schema.parsed
    names = [f["name"] for f in schema["fields"]]
    keep = names[::2]
    timestamps = _timestamps(schema)
    project = serde.projection(keep)
    reference = copy.copy(serde)
    reference._reader = None  # fastavro alone
    rng = random.Random(f"serde-projection-{name}")
    data = serde.encode(_sample(name))
    cases = [data, data[:-1], data + b"\x00"]
    for _ in range(60):
        bad = bytearray(data)
        bad[rng.randrange(10, len(bad))] = rng.randrange(256)
        cases.append(bytes(bad))
    for case in cases:
        try:
            expected = _cut(reference.decode(case), keep, timestamps)
        except DecodeError as exc:
            expected = None
            error = exc.error_type
        try:
            got = project(case)
        except DecodeError as exc:
            # refused as fastavro refuses, or: a bad byte inside a skipped field that the validator would have seen
            assert expected is None or exc.error_type == "invalid_field", (exc, expected)
            continue
        if expected is None:  # fastavro refused it: only a bad value in a skipped field may pass a projection
            assert error in ("schema_mismatch", "invalid_field")
            continue
        assert_same(got, expected)


def test_a_projection_of_fields_the_schema_lacks_is_refused() -> None:
    with pytest.raises(SchemaError, match="no_such_field"):
        CONTRACTS.serde("labels").projection(["is_fraud", "no_such_field"])


def test_a_record_of_another_version_is_resolved_by_fastavro_then_projected() -> None:
    released = [v for v in VERSIONS if v.version > 0]
    assert released, "the registry holds released schema versions (schemas/released/)"
    version = released[0]
    serde = CONTRACTS.serde(TOPIC_OF[version.name])
    keep = [f["name"] for f in serde.schema.parsed["fields"]][:3]
    project = serde.projection(keep)
    rng = random.Random("released")
    for _ in range(10):
        data = b"\xc3\x01" + version.fingerprint + _encode(version.parsed, _random_value(version.parsed, rng, {}))
        try:
            full = serde.decode(data)
        except DecodeError as exc:
            # bytes fastavro cannot read are no record to project either; a time beyond datetime's range is read as
            # epoch microseconds by the projection (the validator judges it where it checks that field)
            if exc.error_type == "schema_mismatch" and "date value out of range" not in str(exc):
                with pytest.raises(DecodeError):
                    project(data)
            continue  # else a validator refused a field the projection may not hold
        assert_same(project(data), _cut(full, keep, _timestamps(serde.schema.parsed)))


def _sample(name: str) -> dict[str, Any]:
    from tests.samples import sample

    return sample(name, 1)


CONTRACTS_SAMPLE = _sample("prediction")
