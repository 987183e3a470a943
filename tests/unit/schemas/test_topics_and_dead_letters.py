from __future__ import annotations

from datetime import UTC, datetime

import pytest

from slipstream.schemas.dead_letter import RawMessage, envelope
from slipstream.schemas.exceptions import TopicError
from slipstream.schemas.topics import TOPICS, TopicCatalog, TopicSpec

REQUIRED = {"transactions", "labels", "interactions", "predictions", "recommendations", "model-events", "dead-letter"}


def test_every_required_topic_is_declared_once() -> None:
    names = [spec.name for spec in TOPICS]
    assert REQUIRED <= set(names)
    assert len(names) == len(set(names))


def test_prefix_namespaces_every_topic() -> None:
    catalog = TopicCatalog("bench-1.")
    assert catalog.name("transactions") == "bench-1.transactions"
    assert catalog.spec("bench-1.labels").name == "labels"
    assert all(name.startswith("bench-1.") for name in catalog.full_names())


def test_unknown_topic_names_the_declared_ones() -> None:
    with pytest.raises(TopicError, match="unknown topic 'trades'; declared topics: transactions"):
        TopicCatalog().spec("trades")


@pytest.mark.parametrize("prefix", ["a b", "x/y", "ü."])
def test_bad_prefix_is_named(prefix: str) -> None:
    with pytest.raises(TopicError, match="topic prefix"):
        TopicCatalog(prefix)


def test_bad_partition_count_is_named() -> None:
    with pytest.raises(TopicError, match="partitions must be >= 1, got 0"):
        TopicSpec("x", "transaction", "customer_id", partitions=0)


def test_config_carries_retention_and_cleanup() -> None:
    spec = TopicCatalog().spec("model-events")
    assert spec.config() == {"retention.ms": "-1", "cleanup.policy": "delete"}


def test_envelope_keeps_the_original_whole() -> None:
    raw = RawMessage("transactions", 3, 41, 1_522_540_800_000, b"596", b"\xff\x00", (("h", b"v"), ("empty", None)))
    now = datetime(2026, 1, 1, tzinfo=UTC)
    record = envelope(raw, error_type="undecodable", reason="bad", processor="p", failed_at=now)
    assert record["original_value"] == b"\xff\x00"
    assert record["original_key"] == b"596"
    assert (record["source_topic"], record["source_partition"], record["source_offset"]) == ("transactions", 3, 41)
    assert record["original_headers"] == {"h": b"v"}
    assert record["failed_at"] == now


def test_envelope_refuses_a_naive_clock() -> None:
    raw = RawMessage("t", 0, 0, None, None, None)
    with pytest.raises(ValueError, match="timezone-aware"):
        envelope(raw, error_type="x", reason="y", processor="z", failed_at=datetime(2026, 1, 1))  # noqa: DTZ001


def test_outputs_are_stamped_by_the_broker_inputs_by_their_producers() -> None:
    """A prediction's Kafka timestamp is when it was on the topic (audits, `bench e2e`); events keep their own."""
    stamped = {spec.name for spec in TOPICS if spec.config().get("message.timestamp.type") == "LogAppendTime"}
    assert stamped == {
        "predictions",
        "recommendations",
        "shadow-comparisons",
        "shadow-rankings",
        "outcomes",
        "drift",
        "drift-windows",
    }
