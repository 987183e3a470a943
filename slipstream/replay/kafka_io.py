"""Raw Kafka reads and writes for slices: offsets by time, a partition's records as they are, and re-production.

Nothing here decodes: bytes, headers, timestamps and partitions pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from confluent_kafka import OFFSET_END, Consumer, KafkaException, Message, Producer, TopicPartition

from slipstream.replay.exceptions import ReplayError
from slipstream.replay.slice_file import SliceRecord
from slipstream.schemas.transport.connection import KafkaLike, kafka_config

TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Span:
    """Offsets ``[start, end)`` of one partition."""

    topic: str  # full name on the broker
    partition: int
    start: int
    end: int

    @property
    def size(self) -> int:
        return max(0, self.end - self.start)


def raw_consumer(bootstrap: KafkaLike, *, read_committed: bool = False) -> Consumer:
    """A consumer outside any group: it is assigned partitions and commits nothing."""
    return Consumer(
        {
            **kafka_config(bootstrap),
            "group.id": "slipstream-record-unmanaged",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "isolation.level": "read_committed" if read_committed else "read_uncommitted",
            "fetch.max.bytes": 16 * 1024 * 1024,
        }
    )


def partitions_of(consumer: Consumer, topic: str) -> list[int]:
    metadata = consumer.list_topics(topic, timeout=TIMEOUT_S).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        msg = f"topic {topic!r} does not exist on the broker"
        raise ReplayError(msg)
    return sorted(metadata.partitions)


def watermarks(consumer: Consumer, topic: str, partition: int) -> tuple[int, int]:
    low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=TIMEOUT_S)
    return int(low), int(high)


def offsets_at(consumer: Consumer, topic: str, partitions: list[int], timestamp_ms: int) -> dict[int, int]:
    """Per partition, the first offset whose timestamp is at or after ``timestamp_ms`` (the end when none is)."""
    asked = [TopicPartition(topic, p, timestamp_ms) for p in partitions]
    try:
        found = consumer.offsets_for_times(asked, timeout=TIMEOUT_S)
    except KafkaException as exc:
        msg = f"cannot look up offsets of {topic!r} at {timestamp_ms} ms: {exc}"
        raise ReplayError(msg) from exc
    out: dict[int, int] = {}
    for tp in found:
        out[tp.partition] = watermarks(consumer, topic, tp.partition)[1] if tp.offset in (-1, OFFSET_END) else tp.offset
    return out


def read_span(consumer: Consumer, span: Span, logical: str, *, poll_s: float = 1.0) -> Iterator[SliceRecord]:
    """The records of ``span`` in offset order (a compacted or transactional topic may skip offsets)."""
    if span.size == 0:
        return
    consumer.assign([TopicPartition(span.topic, span.partition, span.start)])
    idle = 0
    try:
        while True:
            batch = consumer.consume(5000, poll_s)
            if not batch:
                idle += 1
                position = consumer.position([TopicPartition(span.topic, span.partition)])[0].offset
                if position >= span.end or idle >= int(TIMEOUT_S / poll_s):
                    if position < span.end:
                        msg = f"{span.topic}[{span.partition}]: stuck at offset {position} before {span.end}"
                        raise ReplayError(msg)
                    return
                continue
            idle = 0
            for message in batch:
                record = _record(message, logical)
                if record.offset >= span.end:
                    return
                yield record
                if record.offset == span.end - 1:
                    return
    finally:
        consumer.unassign()


def _record(message: Message, logical: str) -> SliceRecord:
    if message.error() is not None:
        msg = f"reading {message.topic()}[{message.partition()}]: {message.error()}"
        raise ReplayError(msg)
    ts_type, ts = message.timestamp()
    pairs: list[tuple[str, str | bytes | None]] = list(message.headers() or [])  # type: ignore[arg-type]
    headers = tuple((str(k), v.encode() if isinstance(v, str) else v) for k, v in pairs)
    key, value = message.key(), message.value()
    return SliceRecord(
        logical,
        int(message.partition() or 0),
        int(message.offset() or 0),
        int(ts),
        int(ts_type),
        key.encode() if isinstance(key, str) else key,
        value.encode() if isinstance(value, str) else value,
        headers,
    )


def raw_producer(bootstrap: KafkaLike, *, linger_ms: float = 5.0) -> Producer:
    return Producer(
        {
            **kafka_config(bootstrap),
            "linger.ms": linger_ms,
            "enable.idempotence": True,
            "acks": "all",  # what idempotence implies in librdkafka anyway; said here so no one turns it down
            "queue.buffering.max.messages": 500_000,
            "batch.size": 1024 * 1024,
        }
    )


class Reproducer:
    """Produces recorded records again: same key, value, headers and partition, and the recorded timestamp for a
    CreateTime topic (a LogAppendTime topic stamps its own)."""

    def __init__(self, producer: Producer, full_name: Callable[[str], str]) -> None:
        self._producer = producer
        self._full = full_name
        self.errors: list[str] = []
        self.sent = 0

    def send(self, record: SliceRecord) -> None:
        while True:
            try:
                self._producer.produce(
                    self._full(record.topic),
                    record.value,
                    record.key,
                    partition=record.partition,
                    timestamp=record.timestamp_ms,
                    headers=list(record.headers),
                    on_delivery=self._delivered,
                )
                break
            except BufferError:
                self._producer.poll(0.05)
        self.sent += 1
        if self.sent % 1000 == 0:
            self._producer.poll(0)

    def _delivered(self, err: object, _message: Message) -> None:
        if err is not None:
            self.errors.append(str(err))

    def flush(self, timeout_s: float = 60.0) -> None:
        left = self._producer.flush(timeout_s)
        if left:
            msg = f"{left} replayed records were not acknowledged within {timeout_s:g} s"
            raise ReplayError(msg)
        if self.errors:
            msg = f"the broker refused replayed records: {self.errors[0]} ({len(self.errors)} in all)"
            raise ReplayError(msg)
