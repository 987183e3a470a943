"""Publishing a slice into the throwaway platform: history as fast as the broker takes it, the window in gated chunks.

Records of every (topic, partition) keep their recorded order; across them they are merged by Kafka timestamp, as
they arrived. The window goes in chunks whose scored events span at most half the allowed lateness in event time,
each scored before the next is published (see :mod:`slipstream.replay.pipeline`). Before the first event the recorded
prediction says another model version scored, the scorer swaps to it, so a promotion inside the window is
reproduced event for event, also when partitions saw it at different moments.

Gating per entity, not per time span: the demo's event time runs ~1,700 times faster than the wall clock, so a chunk
of 1 s event time would hold a single transaction; what must not happen is narrower (see :class:`WindowFeed`).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from slipstream.monitoring.figures import micros
from slipstream.replay.kafka_io import Reproducer
from slipstream.replay.pipeline import Pipeline
from slipstream.replay.scope import GateRule
from slipstream.replay.slice_file import SliceReader, SliceRecord
from slipstream.schemas.exceptions import DecodeError
from slipstream.schemas.serde import AvroSerde

MAX_CHUNK = 5_000


def merged(reader: SliceReader, part: str, topics: Iterable[str] | None = None) -> Iterator[SliceRecord]:
    """Every record of ``part`` (of ``topics``), each partition in order, interleaved by Kafka timestamp."""
    wanted = None if topics is None else set(topics)
    streams = [
        reader.member_records(name)
        for (topic, _partition), name in reader.streams(part).items()
        if wanted is None or topic in wanted
    ]
    return heapq.merge(*streams, key=lambda r: r.timestamp_ms)


def count(reader: SliceReader, part: str, topics: Iterable[str] | None = None) -> int:
    wanted = None if topics is None else set(topics)
    members = reader.manifest["members"]
    return sum(
        int(members[name]["records"])
        for (topic, _p), name in reader.streams(part).items()
        if wanted is None or topic in wanted
    )


@dataclass
class FeedStats:
    records: int = 0
    scored_inputs: int = 0
    chunks: int = 0
    swaps: int = 0
    engine_waits: int = 0
    wall_s: float = 0.0


class WindowFeed:
    """Publishes the window in chunks, each scored before the next.

    A chunk closes before a record of an entity the chunk already holds at a time more than half the lateness
    away (either way): the engine may apply a chunk's records before the scorer scores the chunk's events, and an
    entity's state is pruned relative to its newest event, so within a chunk no entity may move further than the
    lateness. Entities that do not repeat put no bound on a chunk (then ``MAX_CHUNK`` does).

    A record of a source counted once known (a label) changes an entity's features only through the engine: the
    scorer applies the scored events itself, not labels. So before scoring an event of an entity a label touched
    since the engine last caught up (in this chunk or an earlier one: the engine may lag by hundreds of records),
    the chunk closes and the engine is waited for until it has applied everything published — the offline
    engine's "known by t" made deterministic. In production this is a race: a label known a moment before
    a transaction counts if the engine got there first (docs/replay.md)."""

    def __init__(
        self,
        pipeline: Pipeline,
        reproducer: Reproducer,
        serdes: Mapping[str, AvroSerde],
        rules: Mapping[str, GateRule],
        trigger_topic: str,
        id_field: str,
        *,
        lateness_s: float,
        versions: Mapping[str, str] | None,
        model: str,
        speed: float | None,
        on_progress: Callable[[int], None],
    ) -> None:
        self.pipeline = pipeline
        self.reproducer = reproducer
        self.serdes = serdes
        self.rules = rules
        self.trigger_topic = trigger_topic
        self.id_field = id_field
        self.span_us = max(int(lateness_s * 1e6) // 2, 1)
        self.versions = versions
        self.model = model
        self.speed = speed
        self.on_progress = on_progress
        self.stats = FeedStats()
        self._chunk: dict[tuple[str, Any], tuple[int, int]] = {}
        # entities a known-by record (a label) touched since the engine last applied everything published
        self._known: set[tuple[str, Any]] = set()
        self._in_chunk = 0

    def run(self, records: Iterator[SliceRecord]) -> FeedStats:
        started = time.monotonic()
        first_ts: int | None = None
        current = self.pipeline.serving()
        for record in records:
            if self.speed is not None:
                first_ts = record.timestamp_ms if first_ts is None else first_ts
                self._pace(started, (record.timestamp_ms - first_ts) / 1000.0 / self.speed)
            rule = self.rules.get(record.topic)
            value = self._decode(record) if rule is not None else None
            if value is not None and rule is not None:
                if record.topic == self.trigger_topic and self.versions is not None:
                    want = self.versions.get(str(value[self.id_field]))
                    if want is not None and want != current:
                        self._gate()
                        self.pipeline.swap(self.model, want)
                        current = want
                        self.stats.swaps += 1
                t = micros(value[rule.known_by or rule.time_field])
                keys = [(k, value[k]) for k in rule.keys if value.get(k) is not None]
                if record.topic == self.trigger_topic and any(key in self._known for key in keys):
                    self._gate(engine=True)
                elif self._in_chunk >= MAX_CHUNK or any(self._moves(key, t) for key in keys):
                    self._gate()
                for key in keys:
                    lo, hi = self._chunk.get(key, (t, t))
                    self._chunk[key] = (min(lo, t), max(hi, t))
                if rule.known_by is not None:
                    self._known.update(keys)
            if record.topic == self.trigger_topic:
                self.stats.scored_inputs += 1
                self._in_chunk += 1
            self.reproducer.send(record)
            self.stats.records += 1
        self._gate()
        self.stats.wall_s = time.monotonic() - started
        return self.stats

    def _decode(self, record: SliceRecord) -> dict[str, Any] | None:
        try:
            return self.serdes[record.topic].decode(record.value)
        except DecodeError:
            return None  # dead-lettered where it is read, as it was in production

    def _moves(self, key: tuple[str, Any], t: int) -> bool:
        seen = self._chunk.get(key)
        return seen is not None and (t - seen[0] > self.span_us or seen[1] - t > self.span_us)

    def _gate(self, *, engine: bool = False) -> None:
        """Publish what is queued and let the scorer consume all of it (and, with ``engine``, the engine too)."""
        self.reproducer.flush()
        self.pipeline.drain(self.stats.scored_inputs)
        if engine:
            self.pipeline.settle_engine()
            self.stats.engine_waits += 1
            self._known.clear()  # every label published so far is applied; until then they stay pending
        self.stats.chunks += 1
        self._chunk.clear()
        self._in_chunk = 0
        self.on_progress(self.stats.records)

    def _pace(self, started: float, due_s: float) -> None:
        wait = started + due_s - time.monotonic()
        if wait > 0:
            self._gate()
            self.pipeline.wait(wait)
