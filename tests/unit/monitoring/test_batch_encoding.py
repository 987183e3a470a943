"""The Faust host's pure pieces, without a broker: what a handler's output becomes on the wire, the runtime key."""

from __future__ import annotations

import zlib

import pytest

from slipstream.monitoring.batch_encoding import BatchEncoder, partition_for
from slipstream.monitoring.exceptions import MonitoringError
from slipstream.monitoring.transactional import Emitted, TransactionalProcessor
from slipstream.processor_hosts import hosting
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.dead_letter import RawMessage
from tests.samples import sample

CONTRACTS = Contracts.default("unit.")
CHANGELOG = CONTRACTS.topic("outcomes-join.changelog")


def _encoder(**counts: int) -> BatchEncoder:
    partitions = {CONTRACTS.topic(t): n for t, n in counts.items()} | {CHANGELOG: 6}
    return BatchEncoder(CONTRACTS, partitions, CHANGELOG, "outcomes")


def test_partition_is_librdkafkas_consistent_crc32() -> None:
    assert partition_for(b"42", 6) == zlib.crc32(b"42") % 6
    assert {partition_for(str(k).encode(), 6) for k in range(200)} == set(range(6))


def test_records_are_keyed_by_their_topic_key_field_and_partitioned_like_every_other_producer() -> None:
    prediction = sample("prediction") | {"customer_id": 1234}
    emitted = Emitted(records=[("predictions", prediction)], changelog=[(4, b"k", b"v"), (2, b"gone", None)])
    out = _encoder(predictions=6).encode(emitted, [])
    topic, partition, key, value = out[0]
    assert (topic, key) == (CONTRACTS.topic("predictions"), b"1234")
    assert partition == zlib.crc32(b"1234") % 6
    assert CONTRACTS.serde("predictions").decode(value)["customer_id"] == 1234
    assert out[1:] == [(CHANGELOG, 4, b"k", b"v"), (CHANGELOG, 2, b"gone", None)]


def test_dead_letters_carry_the_original_bytes_and_the_reason() -> None:
    raw = RawMessage(CONTRACTS.topic("labels"), 3, 17, None, b"7", b"\x00junk")
    out = _encoder(**{"dead-letter": 3}).encode(Emitted(), [(raw, "undecodable", "bad magic byte")])
    [(topic, partition, key, value)] = out
    assert (topic, partition, key) == (CONTRACTS.topic("dead-letter"), zlib.crc32(b"7") % 3, b"7")
    letter = CONTRACTS.serde("dead-letter").decode(value)
    assert (letter["error_type"], letter["processor"], letter["source_offset"]) == ("undecodable", "outcomes", 17)
    assert letter["original_value"] == b"\x00junk"
    assert "bad magic byte" in letter["reason"]


def test_an_output_topic_missing_on_the_broker_is_named() -> None:
    with pytest.raises(MonitoringError, match=r"topic 'unit\.predictions' does not exist"):
        _encoder().encode(Emitted(records=[("predictions", sample("prediction"))]), [])


def test_runtimes_by_key() -> None:
    assert hosting("kafka") is TransactionalProcessor
    assert hosting("faust").__name__ == "FaustProcessor"
    with pytest.raises(MonitoringError, match="runtime must be one of kafka, faust, got 'flink'"):
        hosting("flink")


def test_librdkafka_settings_are_refused_on_the_faust_runtime() -> None:
    faust = hosting("faust")
    with pytest.raises(MonitoringError, match=r"shadow: \{'session.timeout.ms': 6000\} are librdkafka settings"):
        faust(
            "localhost:1",
            CONTRACTS,
            group_id="g",
            inputs=(),
            handler=None,
            transactional_id="t",
            processor_name="shadow",
            config={"session.timeout.ms": 6000},
        )
