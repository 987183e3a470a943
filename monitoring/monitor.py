"""Reads ``predictions``, ``shadow-comparisons``, ``shadow-rankings`` and ``outcomes`` into a
:class:`~slipstream.monitoring.performance.PerformanceBook`: once to their current ends, or on and on (follow).

The reader is a plain consumer with no group (it commits nothing and disturbs no one), every partition assigned from
the beginning, ``isolation.level=read_committed`` (the label joiner writes outcomes in transactions: an aborted
outcome is never counted). "The current end" is each partition's end when the read starts, which for a
read_committed consumer is the last stable offset: records of a transaction still open are not waited for.
The consumer's position moves past transaction markers, so a partition is caught up when its position reaches that
end. A re-delivered record is counted once by the book (its id); a record that does not decode is counted in the
book's ``rejected`` with the reason, never a crash.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, Final

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from slipstream.monitoring.exceptions import MonitoringError
from slipstream.monitoring.performance import PerformanceBook
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.exceptions import DecodeError
from slipstream.schemas.transport.connection import KafkaLike, kafka_config, list_topics

TOPICS: Final = ("predictions", "shadow-comparisons", "shadow-rankings", "outcomes")


class TopicReader:
    """Every partition of ``topics`` from the beginning, read_committed, decoded with the topics' contracts.

    The reader assigns its partitions itself and never joins a group. With ``progress_group`` it records how far it
    has read as that group's committed offsets (:meth:`commit_positions`), so its lag shows in Kafka's own tools
    (``kafka-consumer-groups --describe``) and anyone can wait for it; where it starts reading is unaffected.
    """

    def __init__(
        self,
        bootstrap_servers: KafkaLike,
        contracts: Contracts,
        topics: Iterable[str] = TOPICS,
        *,
        progress_group: str | None = None,
    ) -> None:
        self.contracts = contracts
        self._logical = {contracts.topic(t): contracts.spec(t).name for t in topics}
        self._bootstrap = bootstrap_servers
        self._consumer = Consumer(
            {
                **kafka_config(bootstrap_servers),
                # required by the client; never joined; committed to only by commit_positions()
                "group.id": progress_group or "slipstream-monitor-unmanaged",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
                "enable.partition.eof": False,
            }
        )
        try:
            metadata = list_topics(self._consumer, 10.0)
        except KafkaException as exc:
            self._consumer.close()
            msg = f"cannot read the topics' metadata from Kafka at {bootstrap_servers!r}: {exc}"
            raise MonitoringError(msg) from exc
        self.partitions: list[TopicPartition] = []
        for full in self._logical:
            topic_md = metadata.topics.get(full)
            if topic_md is None or topic_md.error is not None:
                self._consumer.close()
                msg = f"topic {full!r} does not exist on the broker (run `slipstream topics apply`)"
                raise MonitoringError(msg)
            self.partitions += [TopicPartition(full, p) for p in sorted(topic_md.partitions)]
        self._consumer.assign([TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING) for tp in self.partitions])

    def ends(self) -> dict[tuple[str, int], int]:
        """Each partition's end now (for read_committed: its last stable offset)."""
        ends = {}
        for tp in self.partitions:
            try:
                _low, high = self._consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)
            except KafkaException as exc:
                msg = f"cannot read the end of {tp.topic}[{tp.partition}] at {self._bootstrap!r}: {exc}"
                raise MonitoringError(msg) from exc
            ends[(tp.topic, tp.partition)] = int(high)
        return ends

    def commit_positions(self) -> None:
        """Commit the position of every partition read from, as the progress group's offsets (asynchronous)."""
        positions = [tp for tp in self._consumer.position(self.partitions) if tp.offset >= 0]
        if positions:
            self._consumer.commit(offsets=positions, asynchronous=True)

    def caught_up(self, ends: dict[tuple[str, int], int]) -> bool:
        """Has every partition's position reached its end in ``ends``?"""
        behind = [(t, p) for (t, p), end in ends.items() if end > 0]
        if not behind:
            return True
        positions = self._consumer.position([TopicPartition(t, p) for t, p in behind])
        return all(tp.offset >= ends[(tp.topic, tp.partition)] for tp in positions)

    def poll(self, max_records: int = 5000, timeout: float = 0.5) -> tuple[list[dict[str, Any]], list[str]]:
        """Decoded records, and a reason per record that did not decode."""
        tagged, failures = self.poll_tagged(max_records, timeout)
        return [record for _topic, record in tagged], failures

    def poll_tagged(
        self, max_records: int = 5000, timeout: float = 0.5
    ) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
        """Decoded records with their logical topic names, and a reason per record that did not decode."""
        records: list[tuple[str, dict[str, Any]]] = []
        failures: list[str] = []
        first = self._consumer.poll(timeout)
        if first is None:
            return records, failures
        for msg in [first, *self._consumer.consume(max_records - 1, 0)]:
            err = msg.error()
            if err is not None:
                if err.fatal() or (not err.retriable() and err.code() != KafkaError._PARTITION_EOF):
                    text = f"reading {msg.topic()!r}: {err.str()}"
                    raise MonitoringError(text)
                continue
            full = msg.topic() or ""
            try:
                logical = self._logical[full]
                records.append((logical, self.contracts.serde(logical).decode(msg.value())))
            except DecodeError as exc:
                failures.append(f"{full}[{msg.partition()}]@{msg.offset()}: {exc}")
        return records, failures

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> TopicReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_book(
    bootstrap_servers: KafkaLike,
    contracts: Contracts,
    *,
    book: PerformanceBook | None = None,
    follow: bool = False,
    refresh_s: float = 2.0,
    on_refresh: Callable[[PerformanceBook], None] | None = None,
    stop: Callable[[], bool] | None = None,
    topics: Iterable[str] = TOPICS,
) -> PerformanceBook:
    """Feed ``book`` (a new one by default) with every record of ``topics`` up to their ends now, and return it.

    ``follow``: go on reading until ``stop()`` is true, calling ``on_refresh(book)`` once caught up and then every
    ``refresh_s`` seconds (metrics, a live table). The book is compacted (``retain_days``) whenever the reader has
    caught up with every topic."""
    book = book if book is not None else PerformanceBook()
    should_stop = stop or (lambda: False)
    with TopicReader(bootstrap_servers, contracts, topics) as reader:
        ends = reader.ends()
        caught_up_once = False
        last_refresh = time.monotonic()
        while not should_stop():
            records, failures = reader.poll()
            book.update_all(records)
            for reason in failures:
                book.reject(reason)
            if not follow or not caught_up_once:
                if not reader.caught_up(ends):
                    continue
                book.compact()
                if not follow:
                    break
                caught_up_once = True
                last_refresh = 0.0
            now = time.monotonic()
            if now - last_refresh >= refresh_s:
                if not records and reader.caught_up(reader.ends()):
                    book.compact()
                if on_refresh is not None:
                    on_refresh(book)
                last_refresh = now
    return book


__all__ = ["TOPICS", "TopicReader", "read_book"]
