"""Rebuilding a stage's state from its changelog, in slices, outside the rebalance callback.

The group's rebalance callback only assigns the new partitions and pauses them; the runner's loop then reads their
changelog partitions a slice at a time (at most ``slice_s`` of work per step) between its ordinary polls, and
resumes each input partition once its changelog is read to the end it had when the restore began. The consumer is
polled throughout, so a long restore never exceeds the group's max poll interval, and the partitions it already
owns keep being processed meanwhile. The changelog is compacted, and evicted entities leave tombstones, so a
restore reads about one record per live entity (plus what compaction has not cleaned yet).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from slipstream.schemas.transport import offsets
from slipstream.schemas.transport.connection import KafkaLike, kafka_config
from slipstream.streams.engine.exceptions import StateError

Apply = Callable[[int, bytes, bytes | None], None]


def watermarks(reader: Consumer, tp: TopicPartition, timeout_s: float = 90.0) -> tuple[int, int]:
    """A partition's (low, high) offsets through a broker restart (:func:`offsets.watermarks`), or a ``StateError``."""
    return offsets.watermarks(reader, tp, timeout_s=timeout_s, error=StateError)


class ChangelogRestore:
    """The changelog partitions being read back, and how far each has to go."""

    def __init__(
        self, bootstrap_servers: KafkaLike, changelog: str, *, slice_s: float = 0.2, batch: int = 5000
    ) -> None:
        self.changelog = changelog
        self.slice_s = slice_s
        self.batch = batch
        self._bootstrap = bootstrap_servers
        self._reader: Consumer | None = None
        self._ends: dict[int, int] = {}  # partition -> offset the restore reads up to
        self._done: set[int] = set()  # started, read to the end, not yet handed back by ``step``
        self.records = 0

    @property
    def partitions(self) -> set[int]:
        """Partitions whose restore has started and not been handed back yet."""
        return set(self._ends) | self._done

    def _consumer(self) -> Consumer:
        if self._reader is None:
            self._reader = Consumer(
                {
                    **kafka_config(self._bootstrap),
                    "group.id": f"restore-{self.changelog}",  # never committed: assignment only, no group joined
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                }
            )
        return self._reader

    def start(self, partitions: set[int]) -> None:
        """Begin reading ``partitions``' changelog from its start up to its current end (nothing to read: done)."""
        reader = self._consumer()
        assignment = []
        for p in sorted(partitions - self.partitions):
            low, high = watermarks(reader, TopicPartition(self.changelog, p))
            if high > low:
                self._ends[p] = high
                assignment.append(TopicPartition(self.changelog, p, low))
            else:
                self._done.add(p)
        if assignment:
            reader.incremental_assign(assignment)

    def step(self, apply: Apply, clock: Callable[[], float] = time.monotonic) -> set[int]:
        """Read for at most about ``slice_s``; return the partitions now restored to their end (handed back once)."""
        if self._ends and self._reader is not None:
            deadline = clock() + self.slice_s
            while self._ends and clock() < deadline:
                for msg in self._reader.consume(self.batch, min(self.slice_s, 0.1)):
                    self._take(msg, apply)
        done, self._done = self._done, set()
        return done

    def _take(self, msg: Message, apply: Apply) -> None:
        err = msg.error()
        p = msg.partition() or 0
        if err is not None and (err.fatal() or err.code() in offsets.NEVER_CURED):
            text = f"cannot restore state from {self.changelog}[{p}]: {err.str()}"
            raise StateError(text)
        if p not in self._ends:  # cancelled meanwhile
            return
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                self._finish(p)
            # else a broker going away or a leader moving: librdkafka reconnects and fetches again by itself
            return
        apply(p, msg.key() or b"", msg.value())
        self.records += 1
        if (msg.offset() or 0) + 1 >= self._ends[p]:
            self._finish(p)

    def _finish(self, partition: int) -> None:
        del self._ends[partition]
        self._done.add(partition)
        if self._reader is not None:
            self._reader.incremental_unassign([TopicPartition(self.changelog, partition)])

    def cancel(self, partitions: set[int]) -> None:
        """Stop restoring ``partitions`` (revoked or lost before their restore finished)."""
        self._done -= partitions
        stopping = [TopicPartition(self.changelog, p) for p in partitions if p in self._ends]
        for tp in stopping:
            del self._ends[tp.partition]
        if stopping and self._reader is not None:
            self._reader.incremental_unassign(stopping)

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


__all__ = ["ChangelogRestore", "watermarks"]
