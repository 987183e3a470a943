"""Rebuilding a stage's state from its changelog, in slices, outside the rebalance callback.

The group's rebalance callback only assigns the new partitions and pauses them; the runner's loop then reads their
changelog partitions a slice at a time (at most ``slice_s`` of work per step) between its ordinary polls, and
resumes each input partition once its changelog is read to the end it had when the restore began. The consumer is
polled throughout, so a long restore never exceeds the group's max poll interval, and the partitions it already
owns keep being processed meanwhile. The changelog is compacted, and evicted entities leave tombstones, so a
restore reads about one record per live entity (plus what compaction has not cleaned yet).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from slipstream.schemas.transport.connection import KafkaLike, kafka_config
from slipstream.streams.engine.exceptions import StateError

# Errors no waiting cures (credentials, permissions, a bad request): a restore fails at once on these. Anything else
# while a leader is elected or moves (a topic just created, a broker restarting: timeouts, transport errors, a
# partition unknown to a stale metadata cache, no leader) is asked again until the patience runs out.
_NEVER_CURED = frozenset(
    {
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError._AUTHENTICATION,
        KafkaError._SSL,
        KafkaError._INVALID_ARG,
        KafkaError._FATAL,
    }
)

Apply = Callable[[int, bytes, bytes | None], None]


def watermarks(reader: Consumer, tp: TopicPartition, timeout_s: float = 90.0) -> tuple[int, int]:
    """A partition's (low, high) offsets, asked again while its leader is being elected or moves (a topic just
    created, a broker restarting) for up to ``timeout_s``; then, or on an error no waiting cures, a ``StateError``."""
    started = time.monotonic()
    while True:
        try:
            low, high = reader.get_watermark_offsets(tp, timeout=5)
            return int(low), int(high)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            retriable = isinstance(error, KafkaError) and not error.fatal() and error.code() not in _NEVER_CURED
            waited = time.monotonic() - started
            if not retriable or waited > timeout_s:
                msg = f"cannot read the offsets of {tp.topic}[{tp.partition}] (asked for {waited:.0f} s): {exc}"
                raise StateError(msg) from exc
            time.sleep(0.2)
            _refresh_metadata(reader, tp.topic)


def _refresh_metadata(reader: Consumer, topic: str) -> None:
    """Ask the cluster for ``topic``'s metadata now: a reader that is not subscribed to it may otherwise keep a cache
    that lost the topic while a broker was down and answer ``_UNKNOWN_PARTITION`` until its next periodic refresh
    (the chaos drill saw it for 90 s)."""
    with contextlib.suppress(KafkaException):
        reader.list_topics(topic, timeout=5)


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
        if err is not None and (err.fatal() or err.code() in _NEVER_CURED):
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
