"""The 3-node local Kafka: replicated topics, and acknowledged writes that outlive a broker stopped mid-stream.

One session cluster (``kafka_cluster``); every test on fresh uuid-named topics, deleted afterwards.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition

from slipstream.infra import probes
from slipstream.infra.platform import Platform
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.topics import TopicCatalog, TopicSpec
from slipstream.schemas.transport import EventProducer, TopicAdmin

pytestmark = pytest.mark.integration

PARTITIONS = 3
BATCH = 50  # records per transaction


@pytest.fixture
def catalog(kafka_cluster: Platform) -> Iterator[TopicCatalog]:
    """Two fresh topics of 3 partitions, created by the platform's TopicAdmin (replicas asked of the cluster)."""
    specs = tuple(TopicSpec(name, None, "n", partitions=PARTITIONS) for name in ("txn", "idem"))
    catalog = TopicCatalog(f"c-{uuid.uuid4().hex[:10]}.", specs)
    admin = TopicAdmin(kafka_cluster.config.bootstrap_servers)
    admin.apply(catalog)
    yield catalog
    admin.delete(admin.matching(catalog.prefix))


def _topic_metadata(
    bootstrap: str, topic: str, patience_s: float = 30.0
) -> dict[int, tuple[int, list[int], list[int]]]:
    """Partition -> (leader, replicas, ISR), once the broker asked knows the topic: brokers learn of a new topic
    from the controller one after another, and this client may ask one that has not yet (seen in CI)."""
    from confluent_kafka.admin import AdminClient

    client = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + patience_s
    while True:
        metadata = client.list_topics(topic, timeout=10)
        found = metadata.topics[topic].partitions.values()
        if found or time.monotonic() > deadline:
            return {p.id: (p.leader, list(p.replicas), list(p.isrs)) for p in found}
        time.sleep(0.2)


def test_topics_get_three_replicas_and_two_in_sync(kafka_cluster: Platform, catalog: TopicCatalog) -> None:
    bootstrap = kafka_cluster.config.bootstrap_servers
    admin = TopicAdmin(bootstrap)
    assert admin.replication_factor == 3
    for name in catalog.full_names():
        partitions = _topic_metadata(bootstrap, name)
        assert len(partitions) == PARTITIONS
        assert all(sorted(replicas) == [1, 2, 3] for _leader, replicas, _isr in partitions.values()), partitions
        assert admin.configs(name)["min.insync.replicas"] == "2"
    changes = admin.apply(catalog)  # aligned already: nothing to change
    assert {change.action for change in changes} == {"unchanged"}


@dataclass
class _Writer:
    """A transactional producer (acks=all, idempotent) writing numbered records in transactions of ``BATCH`` until
    told to stop; a record counts as acknowledged once its transaction's commit returned."""

    bootstrap: str
    topic: str
    acknowledged: set[int] = field(default_factory=set)
    aborted: int = 0
    error: BaseException | None = None
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        producer = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "transactional.id": f"{self.topic}-writer",
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "log_level": 3,  # no warnings while a broker is down: they are the point of the test
            }
        )
        try:
            producer.init_transactions(30)
            number = 0
            while not self.stop.is_set():
                batch = list(range(number, number + BATCH))
                if self._commit(producer, batch):
                    self.acknowledged.update(batch)
                    number += BATCH  # an aborted batch is sent again under the same numbers
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            self.error = exc
        finally:
            producer.flush(5)
            producer.close()

    def _commit(self, producer: Producer, batch: list[int]) -> bool:
        producer.begin_transaction()
        for n in batch:
            producer.produce(self.topic, key=str(n % 17).encode(), value=str(n).encode())
        for _attempt in range(10):
            try:
                producer.commit_transaction(30)
            except KafkaException as exc:
                error = exc.args[0]
                if error.txn_requires_abort():
                    producer.abort_transaction(30)
                    self.aborted += 1
                    return False
                if not error.retriable():
                    raise
            else:
                return True
        msg = f"commit of records {batch[0]}..{batch[-1]} kept failing"
        raise AssertionError(msg)


def _read_committed(bootstrap: str, topics: list[str], expected: int, timeout_s: float = 60) -> dict[str, list[int]]:
    """Every record of ``topics`` a read_committed consumer sees, once ``expected`` have arrived or time is up."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"count-{uuid.uuid4().hex[:8]}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    seen: dict[str, list[int]] = {topic: [] for topic in topics}
    try:
        consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in range(PARTITIONS)])
        deadline = time.monotonic() + timeout_s
        while sum(map(len, seen.values())) < expected and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=0.5):
                if message.error() is None:
                    seen[str(message.topic())].append(int(message.value() or b"-1"))
    finally:
        consumer.close()
    return seen


def test_acknowledged_writes_survive_a_broker_stopped_and_started_mid_stream(
    kafka_cluster: Platform, catalog: TopicCatalog
) -> None:
    bootstrap = kafka_cluster.config.bootstrap_servers
    txn_topic, idem_topic = catalog.full_names()
    victim = _topic_metadata(bootstrap, txn_topic)[0][0]  # the leader of partition 0
    writer = _Writer(bootstrap, txn_topic)
    thread = threading.Thread(target=writer.run, name="txn-writer")
    idempotent = EventProducer(bootstrap, Contracts.default(), linger_ms=5, config={"log_level": 3})
    sent = 0

    def send_idempotent(count: int) -> None:
        nonlocal sent
        for n in range(sent, sent + count):
            idempotent.send_raw(idem_topic, str(n % 17).encode(), str(n).encode())
        sent += count

    thread.start()
    try:
        _wait_for(lambda: len(writer.acknowledged) >= 5 * BATCH, writer)
        send_idempotent(2000)
        kafka_cluster.stop_broker(victim)  # SIGTERM; returns once the JVM has exited
        before = len(writer.acknowledged)
        send_idempotent(2000)
        _wait_for(lambda: len(writer.acknowledged) >= before + 5 * BATCH, writer)  # writes go on with 2 of 3
        status = kafka_cluster.start_broker(victim)  # back in the metadata and in every ISR
        send_idempotent(2000)
        after = len(writer.acknowledged)
        _wait_for(lambda: len(writer.acknowledged) >= after + 5 * BATCH, writer)
    finally:
        writer.stop.set()
        thread.join(60)
        idempotent.flush(60)
        idempotent.close()
    assert writer.error is None, writer.error
    assert status.up, status.detail

    metadata = probes.kafka_metadata(bootstrap, timeout_s=10)
    assert metadata is not None and metadata.broker_ids == (1, 2, 3)
    assert all(node.up for node in kafka_cluster.kafka_cluster.node_statuses().values())  # type: ignore[union-attr]

    expected = len(writer.acknowledged) + sent
    seen = _read_committed(bootstrap, [txn_topic, idem_topic], expected)
    assert sorted(seen[txn_topic]) == sorted(writer.acknowledged)  # all committed, none twice, no aborted one
    assert sorted(seen[idem_topic]) == list(range(sent))  # every acknowledged record, once
    assert idempotent.delivered == sent
    # The transaction log is replicated like the data (the broker's transaction.state.log.* settings).
    assert all(
        sorted(replicas) == [1, 2, 3] for _l, replicas, _i in _topic_metadata(bootstrap, "__transaction_state").values()
    )


def _wait_for(condition: object, writer: _Writer, timeout_s: float = 60) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout_s
    while not condition():
        if writer.error is not None:
            raise writer.error
        assert time.monotonic() < deadline, f"the writer stalled at {len(writer.acknowledged)} records"
        time.sleep(0.05)
