"""Consume, process, produce — in Kafka transactions, so a processor's outputs, its state and its input offsets
move together: after a crash (even SIGKILL) nothing is lost and nothing is written twice.

Per batch: read up to ``max_batch`` records (``isolation.level=read_committed``: only what upstream committed), hand
them to the :class:`Handler` (pure logic: state machines per input partition), then in one transaction write its
records, its changelog entries and the batch's input offsets (``send_offsets_to_transaction``, KIP-447: the
group's metadata fences a zombie of this member). A transaction that fails is aborted, the handler's partitions are
restored from the changelog and the consumer rewinds to the committed offsets, so the batch is processed again from
the same state. A restart under the same ``transactional_id`` aborts what its predecessor left open.

Inputs are co-partitioned: every input topic (and the changelog) has the same number of partitions, records of one
entity land on the same partition number everywhere, and the range assignor gives a member the same partition
numbers of every topic. Partition ``p`` of the changelog holds the state of input partition ``p``.

The handler is told when partitions come and go (eager rebalances: every partition is revoked, then the new set
assigned, its state restored first). Its ``tick`` runs about once a second, also when no record arrives (timers).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence, Set
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from slipstream.monitoring.exceptions import MonitoringError
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.dead_letter import RawMessage, envelope
from slipstream.schemas.exceptions import DecodeError
from slipstream.schemas.transport.connection import KafkaLike, close_client, kafka_config, list_topics
from slipstream.schemas.transport.consumer import ConsumedEvent, normalize_headers
from slipstream.schemas.transport.offsets import watermarks

log = logging.getLogger(__name__)
TXN_TIMEOUT_S = 30.0


@dataclass(slots=True)
class Emitted:
    """What a handler produced: records for contract topics and changelog entries (a value of None deletes)."""

    records: list[tuple[str, Mapping[str, Any]]] = field(default_factory=list)
    changelog: list[tuple[int, bytes, bytes | None]] = field(default_factory=list)

    def extend(self, other: Emitted) -> Emitted:
        self.records.extend(other.records)
        self.changelog.extend(other.changelog)
        return self

    def __bool__(self) -> bool:
        return bool(self.records or self.changelog)


class Handler(Protocol):
    """A processor's logic, per input partition. No Kafka in here: it is given records and returns records."""

    def assign(self, partition: int, restored: Mapping[bytes, bytes]) -> None:
        """Partition ``partition`` is now this member's; ``restored`` is its changelog (latest value per key)."""
        ...

    def revoke(self, partition: int) -> None:
        """Forget partition ``partition`` (its state is in the changelog, its offsets committed with it)."""
        ...

    def process(self, events: Sequence[ConsumedEvent]) -> Emitted: ...

    def tick(self, now_s: float) -> Emitted:
        """Called about once a second (wall clock ``now_s``), with or without records: timers, expiry."""
        ...


@runtime_checkable
class EndAware(Protocol):
    """A handler whose logic needs to know which input partitions are read to their end (event-time clocks)."""

    def at_end(self, ends: Set[tuple[str, int]]) -> Emitted:
        """``ends``: (logical topic, partition) with nothing more to read just now, after the last batch."""
        ...


@dataclass(slots=True)
class ProcessorStats:
    consumed: int = 0
    produced: int = 0
    changelog_writes: int = 0
    dead_letters: int = 0
    transactions: int = 0
    aborted: int = 0
    restored: int = 0
    rebalances: int = 0
    partitions: tuple[int, ...] = ()


def _check_copartitioned(consumer: Consumer, topics: Sequence[str]) -> int:
    metadata = list_topics(consumer, 10.0)  # a refused login raises KafkaAccessError at once
    counts: dict[str, int] = {}
    for topic in topics:
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            msg = f"topic {topic!r} does not exist on the broker (run `slipstream topics apply`)"
            raise MonitoringError(msg)
        counts[topic] = len(found.partitions)
    if len(set(counts.values())) > 1:
        msg = f"inputs and changelog must have the same number of partitions (co-partitioned), got {counts}"
        raise MonitoringError(msg)
    return next(iter(counts.values()))


def _end_offset(reader: Consumer, tp: TopicPartition, patience_s: float = 30.0) -> int:
    """The partition's end, waiting out a leader election (a topic just created, a broker restarting)."""
    return watermarks(reader, tp, timeout_s=patience_s, error=MonitoringError)[1]


def _start_offset(consumer: Consumer, tp: TopicPartition) -> int:
    """Where a partition with no committed offset is read from (``auto.offset.reset=earliest``): its low mark."""
    try:
        return int(consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)[0])
    except KafkaException:
        return -1  # unknown: the partition counts as not at its end until a record is read


class TransactionalProcessor:
    """Runs a :class:`Handler` over ``inputs`` (logical topic names) as member of ``group_id``, exactly once."""

    def __init__(
        self,
        bootstrap_servers: KafkaLike,
        contracts: Contracts,
        *,
        group_id: str,
        inputs: Sequence[str],
        handler: Handler,
        transactional_id: str,
        changelog: str | None = None,
        processor_name: str = "processor",
        max_batch: int = 2000,
        poll_s: float = 0.05,
        tick_s: float = 1.0,
        fetch_wait_ms: int = 50,
        fetch_min_bytes: int = 32 * 1024,
        fields: Mapping[str, Collection[str]] | None = None,
        config: Mapping[str, Any] | None = None,
        producer_config: Mapping[str, Any] | None = None,
    ) -> None:
        if max_batch < 1:
            msg = f"max_batch must be >= 1, got {max_batch}"
            raise MonitoringError(msg)
        self.contracts = contracts
        self.handler = handler
        self.processor_name = processor_name
        self.max_batch = max_batch
        self.poll_s = poll_s
        self.tick_s = tick_s
        self.stats = ProcessorStats()
        self._bootstrap = bootstrap_servers
        self._logical = {contracts.topic(t): contracts.spec(t).name for t in inputs}
        # per input topic (full name) its decoder: a projection when the handler reads only some ``fields`` of it
        # (their timestamps then come as epoch microseconds)
        projected = fields or {}
        self._decoders: dict[str, Callable[[bytes | None], dict[str, Any]]] = {
            full: contracts.serde(t).projection(projected[t]) if t in projected else contracts.serde(t).decode
            for full, t in self._logical.items()
        }
        # per output topic (logical name): its full name, encoder and key field, looked up once
        self._outputs: dict[str, tuple[str, Callable[[Mapping[str, Any]], bytes], str]] = {}
        self._changelog = contracts.topic(changelog) if changelog is not None else None
        self._dead_letter_topic = contracts.topic("dead-letter")
        self._partitions: set[int] = set()
        self._assigned_at = 0.0
        self._next: dict[tuple[str, int], int] = {}  # (topic, partition) -> next offset to read
        self._next_tick = 0.0
        conf: dict[str, Any] = {
            **kafka_config(bootstrap_servers),
            "group.id": group_id,
            # static membership: a restarted worker (same id) takes its partitions back at once, no rebalance
            "group.instance.id": transactional_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "partition.assignment.strategy": "range",
            "enable.partition.eof": False,
            # Fetch in batches: the broker answers once fetch_min_bytes are there or fetch_wait_ms passed. Small,
            # frequent fetches cost more CPU in librdkafka than the processing itself (label join at 1,000
            # predictions/s: 337 us of CPU per prediction with 50 ms / 1 byte, 210 with 200 ms / 64 KiB).
            "fetch.wait.max.ms": fetch_wait_ms,
            "fetch.min.bytes": fetch_min_bytes,
            "socket.nagle.disable": True,
            **(config or {}),
        }
        self._consumer = Consumer(conf)
        opened = ExitStack()  # what to close if the start fails
        opened.callback(self._consumer.close)
        try:
            topics = [*self._logical, *([self._changelog] if self._changelog else [])]
            self.n_partitions = _check_copartitioned(self._consumer, topics)
            self._producer = Producer(
                {
                    **kafka_config(bootstrap_servers),
                    "transactional.id": transactional_id,
                    "enable.idempotence": True,
                    "acks": "all",
                    "linger.ms": 20,  # a transaction's commit flushes what lingers
                    "compression.type": "lz4",
                    "transaction.timeout.ms": int(TXN_TIMEOUT_S * 2000),
                    "socket.nagle.disable": True,
                    **(producer_config or {}),
                }
            )
            opened.callback(close_client, self._producer, flush_s=0, discard=True)
            self._producer.init_transactions(TXN_TIMEOUT_S)  # aborts what a predecessor with this id left open
        except BaseException as exc:
            with suppress(Exception):  # the start's error is the one to report
                opened.close()
            if isinstance(exc, KafkaException):
                msg = f"{processor_name}: cannot start its transactions ({transactional_id!r}): {exc.args[0].str()}"
                raise MonitoringError(msg) from exc
            raise
        self._consumer.subscribe(
            list(self._logical), on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
        )

    # --- partitions and state ---

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.stats.rebalances += 1
        for tp in consumer.committed(partitions, timeout=10):  # where reading starts: the ends check needs it
            self._next[(tp.topic, tp.partition)] = tp.offset if tp.offset >= 0 else _start_offset(consumer, tp)
        new = sorted({tp.partition for tp in partitions} - self._partitions)
        for number, restored in self._restore(new).items():
            self.stats.restored += len(restored)
            self.handler.assign(number, restored)
            self._partitions.add(number)
        self.stats.partitions = tuple(sorted(self._partitions))
        self._assigned_at = time.monotonic()  # an idle clock starts once the partitions' state is back

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for number in sorted({tp.partition for tp in partitions} & self._partitions):
            self.handler.revoke(number)
            self._partitions.discard(number)
        self.stats.partitions = tuple(sorted(self._partitions))

    def _restore(self, numbers: Sequence[int]) -> dict[int, dict[bytes, bytes]]:
        """The latest committed value per key of each changelog partition in ``numbers`` (tombstones drop keys),
        read by one consumer to the end of what is committed (``read_committed``: markers and aborted records are
        skipped)."""
        states: dict[int, dict[bytes, bytes]] = {n: {} for n in numbers}
        if self._changelog is None or not numbers:
            return states
        reader = Consumer(
            {
                **kafka_config(self._bootstrap),
                "group.id": f"slipstream-restore-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
            }
        )
        topic = self._changelog
        try:
            pending = {n for n in numbers if _end_offset(reader, TopicPartition(topic, n)) > 0}
            if not pending:
                return states
            reader.assign([TopicPartition(topic, n, OFFSET_BEGINNING) for n in sorted(pending)])
            deadline = time.monotonic() + 120.0
            while pending:
                if time.monotonic() > deadline:
                    msg = f"{self.processor_name}: restoring {topic} {sorted(pending)} took over 120 s"
                    raise MonitoringError(msg)
                for record in reader.consume(5000, 0.2):
                    number = record.partition() or 0
                    err = record.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            pending.discard(number)
                            continue
                        text = f"{self.processor_name}: restoring {topic}[{number}]: {err.str()}"
                        raise MonitoringError(text)
                    key, value = record.key(), record.value()
                    if key is None:
                        continue
                    if value is None:
                        states[number].pop(key, None)
                    else:
                        states[number][key] = value
            return states
        finally:
            reader.close()

    # --- the loop ---

    def run(self, stop: threading.Event, *, until_idle_s: float | None = None) -> ProcessorStats:
        """Process until ``stop`` is set (or, with ``until_idle_s``, until nothing arrived for that long)."""
        last = time.monotonic()
        while not stop.is_set():
            if self.step():
                last = time.monotonic()
            elif (
                until_idle_s is not None
                and self._partitions
                and time.monotonic() - max(last, self._assigned_at) >= until_idle_s
            ):
                break
        return self.stats

    def step(self) -> int:
        """One batch: read, process, write in a transaction. Returns the number of input records handled."""
        messages = self._consumer.consume(self.max_batch, self.poll_s)
        events: list[ConsumedEvent] = []
        dead: list[tuple[RawMessage, str, str]] = []
        offsets: dict[tuple[str, int], int] = {}
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.fatal() or not err.retriable():
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    text = f"{self.processor_name}: consumer error: {err.str()}"
                    raise MonitoringError(text)
                continue
            full, partition, offset = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
            offsets[(full, partition)] = offset + 1
            self._next[(full, partition)] = offset + 1
            decoded = self._decode(msg, full, partition, offset, dead)
            if decoded is not None:
                events.append(decoded)
        emitted = self.handler.process(events) if events else Emitted()
        if isinstance(self.handler, EndAware):
            emitted.extend(self.handler.at_end(self._ends()))
        now = time.monotonic()
        if now >= self._next_tick:
            self._next_tick = now + self.tick_s
            emitted.extend(self.handler.tick(time.time()))
        if offsets or emitted or dead:
            self._transact(offsets, emitted, dead)
        self.stats.consumed += len(events)
        return len(offsets)

    def _ends(self) -> set[tuple[str, int]]:
        """Assigned input partitions read to the end the consumer last saw (with ``read_committed``, the last stable
        offset): the next offset to read — the committed one until a record is consumed, the consumer's position
        after (which steps over transaction markers) — is at or past it."""
        ends: set[tuple[str, int]] = set()
        for tp in self._consumer.position(self._consumer.assignment()):
            key = (tp.topic, tp.partition)
            following = max(tp.offset, self._next.get(key, -1))
            _low, high = self._consumer.get_watermark_offsets(tp, cached=True)
            if following >= 0 and high >= 0 and following >= high:
                ends.add((self._logical[tp.topic], tp.partition))
        return ends

    def _decode(
        self, msg: Message, full: str, partition: int, offset: int, dead: list[tuple[RawMessage, str, str]]
    ) -> ConsumedEvent | None:
        ts_type, ts = msg.timestamp()
        try:
            value = self._decoders[full](msg.value())
        except DecodeError as exc:
            headers = normalize_headers(msg.headers())
            raw = RawMessage(full, partition, offset, ts if ts_type else None, msg.key(), msg.value(), headers)
            dead.append((raw, exc.error_type, str(exc)))
            return None
        return ConsumedEvent(full, partition, offset, ts if ts_type else None, msg.key(), value)

    def _transact(
        self, offsets: Mapping[tuple[str, int], int], emitted: Emitted, dead: Sequence[tuple[RawMessage, str, str]]
    ) -> None:
        producer = self._producer
        producer.begin_transaction()
        try:
            outputs = self._outputs
            for topic, record in emitted.records:
                output = outputs.get(topic) or self._output(topic)
                key = record.get(output[2])
                if key is None:
                    key = self.contracts.key(topic, record)  # raises, naming the missing key field
                self._produce(output[0], str(key).encode(), output[1](record))
            for partition, key, value in emitted.changelog:
                assert self._changelog is not None  # noqa: S101 - a handler without a changelog emits none
                self._produce(self._changelog, key, value, partition)
            dl_serde = self.contracts.serde("dead-letter")
            failed_at = datetime.now(UTC)
            for raw, error_type, reason in dead:
                record = envelope(
                    raw, error_type=error_type, reason=reason, processor=self.processor_name, failed_at=failed_at
                )
                self._produce(self._dead_letter_topic, raw.key, dl_serde.encode(record))
            if offsets:
                positions = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
                producer.send_offsets_to_transaction(positions, self._consumer.consumer_group_metadata(), TXN_TIMEOUT_S)
            producer.commit_transaction(TXN_TIMEOUT_S)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if not error.txn_requires_abort():
                msg = f"{self.processor_name}: transaction failed and cannot be retried: {error.str()}"
                raise MonitoringError(msg) from exc
            log.warning("%s: transaction aborted (%s); replaying from the committed state", self.processor_name, error)
            producer.abort_transaction(TXN_TIMEOUT_S)
            self.stats.aborted += 1
            self._rewind()
            return
        except BaseException:
            producer.abort_transaction(TXN_TIMEOUT_S)
            raise
        self.stats.transactions += 1
        self.stats.produced += len(emitted.records)
        self.stats.changelog_writes += len(emitted.changelog)
        self.stats.dead_letters += len(dead)

    def _output(self, topic: str) -> tuple[str, Callable[[Mapping[str, Any]], bytes], str]:
        serde = self.contracts.serde(topic)
        output = self._outputs[topic] = (serde.topic, serde.encode, self.contracts.spec(topic).key_field)
        return output

    def _produce(self, topic: str, key: bytes | None, value: bytes | None, partition: int = -1) -> None:
        """Produce one record (``partition`` -1: the partitioner's choice), waiting out a full local queue."""
        while True:
            try:
                self._producer.produce(topic, value, key, partition)
                return
            except BufferError:
                self._producer.poll(0.05)

    def _rewind(self) -> None:
        """After an abort: state back to the changelog, positions back to the committed offsets."""
        assignment = self._consumer.assignment()
        for number in sorted(self._partitions):
            self.handler.revoke(number)
        for number, restored in self._restore(sorted(self._partitions)).items():
            self.handler.assign(number, restored)
        committed = self._consumer.committed(assignment, timeout=10)
        for tp in committed:
            offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            self._consumer.seek(TopicPartition(tp.topic, tp.partition, offset))

    def close(self) -> None:
        """Leave the group and release the clients (call between steps: no transaction is open then)."""
        with ExitStack() as closing:  # each whatever the other raises
            closing.callback(close_client, self._producer, flush_s=0, discard=True)  # between transactions: none queued
            closing.callback(self._consumer.close)
