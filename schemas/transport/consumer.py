"""A consumer that decodes with the contracts and splits every batch into good events and dead letters."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from slipstream.schemas.contracts import Contracts
from slipstream.schemas.dead_letter import RawMessage
from slipstream.schemas.exceptions import DecodeError, TopicError
from slipstream.schemas.transport.connection import KafkaLike, kafka_config, list_topics
from slipstream.schemas.transport.producer import EventProducer


@dataclass(frozen=True, slots=True)
class ConsumedEvent:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DecodeFailure:
    message: RawMessage
    error_type: str
    reason: str


@dataclass(slots=True)
class ConsumedBatch:
    """One poll's worth: the events that decoded and validated, and the ones that did not."""

    events: list[ConsumedEvent] = field(default_factory=list)
    failures: list[DecodeFailure] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.events) + len(self.failures)


def normalize_headers(
    headers: Mapping[str, str | bytes | None] | Iterable[tuple[str, str | bytes | None]] | None,
) -> tuple[tuple[str, bytes | None], ...]:
    """Kafka headers as (name, bytes) pairs, whichever shape the client returned them in."""
    if headers is None:
        return ()
    items = headers.items() if isinstance(headers, Mapping) else headers
    return tuple((str(name), value.encode() if isinstance(value, str) else value) for name, value in items)


class EventConsumer:
    """Reads logical topics, decodes each value with its topic's contract.

    With ``group_id`` it joins a consumer group (offsets committed by the caller via :meth:`commit`);
    without, it assigns every partition itself and commits nothing (tail, replays, tests).
    A failure is dead-lettered when ``dead_letters`` is given, and always reported in the batch.
    """

    def __init__(
        self,
        bootstrap_servers: KafkaLike,
        contracts: Contracts,
        topics: Iterable[str],
        *,
        group_id: str | None = None,
        from_beginning: bool = True,
        dead_letters: EventProducer | None = None,
        processor: str = "consumer",
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.contracts = contracts
        self._logical = {contracts.topic(t): contracts.spec(t).name for t in topics}
        self._dead_letters = dead_letters
        self._processor = processor
        conf: dict[str, Any] = {
            **kafka_config(bootstrap_servers),
            "group.id": group_id or "slipstream-unmanaged",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest" if from_beginning else "latest",
            "enable.partition.eof": False,
            "fetch.wait.max.ms": 50,
            "socket.nagle.disable": True,  # no Nagle delay on small, latency-bound requests
        }
        conf.update(config or {})
        self._consumer = Consumer(conf)
        self._from_beginning = from_beginning
        #: Set once the group gave this consumer its partitions and their start positions are fixed.
        self.assigned = threading.Event()
        if group_id is not None:
            self._consumer.subscribe(list(self._logical), on_assign=self._on_assign)
        else:
            try:
                self._assign_all(from_beginning)
            except BaseException:
                self._consumer.close()  # a refused login or a missing topic: no client left behind
                raise
            self.assigned.set()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """A group member starting "from the end" pins the end *now* for partitions the group never committed,
        so every record produced after :attr:`assigned` is set is read (no race with a lazy offset reset)."""
        if not self._from_beginning and partitions:
            committed = consumer.committed(partitions, timeout=10)
            for tp, done in zip(partitions, committed, strict=True):
                if done.offset < 0:
                    _low, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)
                    tp.offset = high
            consumer.assign(partitions)
        self.assigned.set()

    def _assign_all(self, from_beginning: bool) -> None:
        metadata = list_topics(self._consumer, 10.0)
        assignment: list[TopicPartition] = []
        for full in self._logical:
            topic_md = metadata.topics.get(full)
            if topic_md is None or topic_md.error is not None:
                msg = f"topic {full!r} does not exist on the broker (run `slipstream topics apply`)"
                raise TopicError(msg)
            for partition in sorted(topic_md.partitions):
                if from_beginning:
                    assignment.append(TopicPartition(full, partition, OFFSET_BEGINNING))
                else:  # pin today's end now, so nothing produced after this call is missed
                    _low, high = self._consumer.get_watermark_offsets(TopicPartition(full, partition), timeout=10)
                    assignment.append(TopicPartition(full, partition, high))
        self._consumer.assign(assignment)

    def poll_batch(self, max_records: int = 1000, timeout: float = 1.0) -> ConsumedBatch:
        """Wait up to ``timeout`` for the first message, then take what is already fetched (up to ``max_records``).

        Returning as soon as anything arrives keeps latency low; draining the local queue keeps throughput high.
        """
        batch = ConsumedBatch()
        first = self._consumer.poll(timeout)
        if first is None:
            return batch
        messages = [first, *self._consumer.consume(max_records - 1, 0)] if max_records > 1 else [first]
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                if err.fatal() or not err.retriable():
                    msg_text = f"consumer error: {err.str()}"
                    raise TopicError(msg_text)
                continue
            full, partition, offset = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
            ts_type, ts = msg.timestamp()
            raw_value = msg.value()
            try:
                value = self.contracts.serde(self._logical[full]).decode(raw_value)
            except DecodeError as exc:
                raw = RawMessage(
                    full,
                    partition,
                    offset,
                    ts if ts_type else None,
                    msg.key(),
                    raw_value,
                    normalize_headers(msg.headers()),
                )
                failure = DecodeFailure(raw, exc.error_type, str(exc))
                batch.failures.append(failure)
                if self._dead_letters is not None:
                    self._dead_letters.dead_letter(
                        raw, error_type=exc.error_type, reason=str(exc), processor=self._processor
                    )
                continue
            batch.events.append(ConsumedEvent(full, partition, offset, ts if ts_type else None, msg.key(), value))
        return batch

    def commit(self, *, asynchronous: bool = False) -> None:
        """Commit the offsets of everything returned so far (after its effects are durable).

        ``asynchronous``: don't wait for the coordinator (a hot loop's choice): a commit that fails is retried by
        the next one, and at worst records are read again, which at-least-once consumers already tolerate.
        """
        try:
            if asynchronous:
                self._consumer.commit(asynchronous=True)
            else:
                self._consumer.commit(asynchronous=False)
        except KafkaException as exc:
            # Nothing new to commit (a stop right after a rebalance or an empty batch): not an error.
            if exc.args and exc.args[0].code() == KafkaError._NO_OFFSET:
                return
            raise

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> EventConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
