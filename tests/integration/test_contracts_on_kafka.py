"""Every contract through a real broker: round trips, dead letters, topics as code."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, Consumer

from slipstream.schemas.contracts import Contracts
from slipstream.schemas.transport import EventConsumer, EventProducer, TopicAdmin
from tests.conftest import Services
from tests.samples import sample

pytestmark = pytest.mark.integration


def _drain(consumer: EventConsumer, expected: int, max_polls: int = 60) -> tuple[list[dict[str, object]], list[str]]:
    values: list[dict[str, object]] = []
    reasons: list[str] = []
    for _ in range(max_polls):
        batch = consumer.poll_batch(max_records=1000, timeout=0.5)
        values.extend(e.value for e in batch.events)
        reasons.extend(f.reason for f in batch.failures)
        if len(values) + len(reasons) >= expected:
            break
    return values, reasons


def test_every_schema_round_trips_through_a_real_topic(services: Services, contracts: Contracts) -> None:
    topics = [spec.name for spec in contracts.catalog if spec.value_schema]
    with EventProducer(services.bootstrap_servers, contracts) as producer:
        for topic in topics:
            for i in range(3):
                producer.send(topic, sample(str(contracts.spec(topic).value_schema), i))
    for topic in topics:
        with EventConsumer(services.bootstrap_servers, contracts, [topic]) as consumer:
            values, reasons = _drain(consumer, 3)
        assert reasons == []
        expected = [sample(str(contracts.spec(topic).value_schema), i) for i in range(3)]
        key = contracts.spec(topic).key_field
        assert sorted(values, key=lambda v: str(v[key]) + str(v)) == sorted(
            expected, key=lambda v: str(v[key]) + str(v)
        )


def test_malformed_bytes_become_dead_letters_and_the_consumer_goes_on(services: Services, contracts: Contracts) -> None:
    producer = EventProducer(services.bootstrap_servers, contracts)
    topic = contracts.topic("transactions")
    good = contracts.serde("transactions").encode(sample("transaction", 1))
    producer.send_raw(topic, b"1", b"\x00garbage that is not avro", headers=[("trace", b"abc")])
    producer.send_raw(topic, b"1", good[:-2])  # truncated body
    producer.send_raw(topic, b"1", good)
    producer.flush()

    with EventConsumer(
        services.bootstrap_servers, contracts, ["transactions"], dead_letters=producer, processor="test-proc"
    ) as consumer:
        values, reasons = _drain(consumer, 3)
    producer.flush()
    assert values == [sample("transaction", 1)]
    assert len(reasons) == 2

    with EventConsumer(services.bootstrap_servers, contracts, ["dead-letter"]) as dlq:
        letters, dlq_reasons = _drain(dlq, 2)
    assert dlq_reasons == []
    by_offset = {letter["source_offset"]: letter for letter in letters}
    assert set(by_offset) == {0, 1}
    first = by_offset[0]
    assert first["original_value"] == b"\x00garbage that is not avro"
    assert first["original_key"] == b"1"
    assert first["original_headers"] == {"trace": b"abc"}
    assert first["source_topic"] == topic
    assert first["error_type"] == "undecodable"
    assert "not an Avro single-object message" in str(first["reason"])
    assert first["processor"] == "test-proc"
    assert by_offset[1]["error_type"] == "schema_mismatch"
    assert by_offset[1]["original_value"] == good[:-2]


def test_topics_apply_is_idempotent_and_repairs_drift(services: Services, contracts: Contracts) -> None:
    admin = TopicAdmin(services.bootstrap_servers)
    again = admin.apply(contracts.catalog)
    assert {c.action for c in again} == {"unchanged"}
    existing = admin.existing()
    for spec in contracts.catalog:
        assert existing[contracts.catalog.prefix + spec.name] == spec.partitions

    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

    name = contracts.topic("labels")
    raw = AdminClient({"bootstrap.servers": services.bootstrap_servers})
    entry = ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)
    futures = raw.incremental_alter_configs(
        [ConfigResource(ConfigResource.Type.TOPIC, name, incremental_configs=[entry])]
    )
    for future in futures.values():
        future.result()
    resource = ConfigResource(ConfigResource.Type.TOPIC, name)
    for _ in range(50):  # the broker applies config changes through its metadata log: wait until it shows
        if raw.describe_configs([resource])[resource].result()["retention.ms"].value == "1000":
            break
        time.sleep(0.1)
    else:
        pytest.fail("the broker never showed retention.ms=1000")
    changes = {c.topic: c for c in admin.apply(contracts.catalog)}
    assert changes[name].action == "updated"
    assert f"retention.ms={contracts.spec('labels').retention_ms}" in changes[name].detail
    assert {c.action for c in admin.apply(contracts.catalog)} == {"unchanged"}


def test_predictions_are_stamped_when_the_broker_appends_them(services: Services, contracts: Contracts) -> None:
    """`bench e2e` and audits read "when was this prediction on the topic" off its Kafka timestamp."""
    old_ms = int(time.time() * 1000) - 3_600_000  # a producer's own clock, an hour behind (within retention)
    with EventProducer(services.bootstrap_servers, contracts) as producer:
        for topic, schema in (("predictions", "prediction"), ("transactions", "transaction")):
            producer.send_raw(
                contracts.topic(topic), b"7", contracts.serde(topic).encode(sample(schema, 1)), timestamp_ms=old_ms
            )
    before_ms = time.time() * 1000 - 60_000  # the broker's stamp: now, not an hour ago
    stamps = {}
    for topic in ("predictions", "transactions"):
        consumer = Consumer(
            {
                "bootstrap.servers": services.bootstrap_servers,
                "group.id": f"{topic}-stamps",
                "auto.offset.reset": "earliest",
            }
        )
        consumer.subscribe([contracts.topic(topic)])
        try:
            for _ in range(60):
                msg = consumer.poll(0.5)
                if msg is not None and msg.error() is None and msg.key() == b"7":
                    stamps[topic] = msg.timestamp()
                    break
        finally:
            consumer.close()
    stamp_type, at_ms = stamps["predictions"]
    assert stamp_type == TIMESTAMP_LOG_APPEND_TIME
    assert at_ms > before_ms
    assert stamps["transactions"] == (TIMESTAMP_CREATE_TIME, old_ms)  # events keep their producer's time
