from __future__ import annotations

import math
from datetime import datetime

import pytest

from slipstream.schemas.contracts import Contracts
from slipstream.schemas.exceptions import DecodeError, SerializationError
from slipstream.schemas.framing import SINGLE_OBJECT_MAGIC, SingleObjectFraming
from slipstream.schemas.registry import SchemaRegistry, fingerprint64
from tests.samples import sample

REGISTRY = SchemaRegistry.load()
CONTRACTS = Contracts.default()
TOPIC_OF = {spec.value_schema: spec.name for spec in CONTRACTS.catalog if spec.value_schema}


def test_fingerprint_matches_the_avro_spec_vector() -> None:
    # CRC-64-AVRO of the canonical form "int" is 0x7275d51a3f395c8f, stored little-endian.
    assert fingerprint64("int") == bytes.fromhex("8f5c393f1ad57572")


def test_every_declared_topic_has_a_schema_and_a_sample() -> None:
    assert set(TOPIC_OF) == set(REGISTRY.names())


@pytest.mark.parametrize("name", sorted(REGISTRY.names()))
def test_every_schema_round_trips(name: str) -> None:
    serde = CONTRACTS.serde(TOPIC_OF[name])
    record = sample(name, 3)
    data = serde.encode(record)
    assert data[:2] == SINGLE_OBJECT_MAGIC
    assert data[2:10] == REGISTRY.get(name).fingerprint
    assert serde.decode(data) == record


def test_key_is_the_entity_field() -> None:
    assert CONTRACTS.key("transactions", sample("transaction", 4)) == b"600"


def test_naive_event_time_is_refused_naming_the_field() -> None:
    record = sample("transaction") | {"event_time": datetime(2018, 4, 1)}  # noqa: DTZ001 - the point of the test
    with pytest.raises(SerializationError, match="event_time must be timezone-aware"):
        CONTRACTS.serde("transactions").encode(record)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"amount": -1.0}, "amount must be a finite number >= 0, got -1.0"),
        ({"amount": math.nan}, "amount must be a finite number >= 0, got nan"),
        ({"customer_id": None}, "missing id 'customer_id'"),
    ],
)
def test_invalid_transactions_are_refused_on_encode(change: dict[str, object], message: str) -> None:
    with pytest.raises(SerializationError, match=message):
        CONTRACTS.serde("transactions").encode(sample("transaction") | change)


def test_missing_field_is_named() -> None:
    record = sample("transaction")
    del record["terminal_id"]
    with pytest.raises(SerializationError, match="terminal_id"):
        CONTRACTS.serde("transactions").encode(record)


def test_garbage_is_undecodable_with_reason() -> None:
    with pytest.raises(DecodeError, match="not an Avro single-object message") as info:
        CONTRACTS.serde("transactions").decode(b"hello world, not avro")
    assert info.value.error_type == "undecodable"


def test_unknown_fingerprint_is_undecodable() -> None:
    with pytest.raises(DecodeError, match="unknown schema fingerprint 0011223344556677"):
        CONTRACTS.serde("transactions").decode(SINGLE_OBJECT_MAGIC + bytes.fromhex("0011223344556677") + b"\x02")


def test_truncated_body_is_a_schema_mismatch() -> None:
    data = CONTRACTS.serde("transactions").encode(sample("transaction"))
    with pytest.raises(DecodeError) as info:
        CONTRACTS.serde("transactions").decode(data[:-3])
    assert info.value.error_type == "schema_mismatch"


def test_trailing_bytes_are_a_schema_mismatch() -> None:
    data = CONTRACTS.serde("transactions").encode(sample("transaction"))
    with pytest.raises(DecodeError, match="trailing bytes") as info:
        CONTRACTS.serde("transactions").decode(data + b"\x00")
    assert info.value.error_type == "schema_mismatch"


def test_valid_avro_with_invalid_value_is_invalid_field() -> None:
    framing = SingleObjectFraming(REGISTRY)
    serde = CONTRACTS.serde("transactions")
    # Bypass the producer-side check to simulate a foreign producer writing a negative amount.
    import io

    import fastavro

    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, serde.schema.parsed, sample("transaction") | {"amount": -5.0})
    data = framing.frame("transactions", serde.schema, buf.getvalue())
    with pytest.raises(DecodeError, match="amount must be a finite number >= 0, got -5.0") as info:
        serde.decode(data)
    assert info.value.error_type == "invalid_field"


def test_tombstone_is_undecodable() -> None:
    with pytest.raises(DecodeError, match="tombstone"):
        CONTRACTS.serde("transactions").decode(None)
