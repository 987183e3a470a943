"""Publishing a slice into the throwaway platform: history as fast as the broker takes it, the window in gated chunks.

Records of every (topic, partition) keep their recorded order; across them they are merged by Kafka timestamp, as
they arrived. The window goes in chunks whose scored events span at most half the allowed lateness in event time,
each scored before the next is published (see :mod:`slipstream.replay.pipeline`). Before the first event the recorded
prediction says another model version scored, the scorer swaps to it, so a promotion inside the window is
reproduced event for event, also when partitions saw it at different moments.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from slipstream.monitoring.figures import micros
from slipstream.replay.kafka_io import Reproducer
from slipstream.replay.pipeline import Pipeline
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
    wall_s: float = 0.0


class WindowFeed:
    def __init__(
        self,
        pipeline: Pipeline,
        reproducer: Reproducer,
        trigger: AvroSerde,
        trigger_topic: str,
        time_field: str,
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
        self.trigger = trigger
        self.trigger_topic = trigger_topic
        self.time_field = time_field
        self.id_field = id_field
        self.span_us = max(int(lateness_s * 1e6) // 2, 1)
        self.versions = versions
        self.model = model
        self.speed = speed
        self.on_progress = on_progress
        self.stats = FeedStats()

    def run(self, records: Iterator[SliceRecord]) -> FeedStats:
        started = time.monotonic()
        lo = hi = None
        in_chunk = 0
        first_ts: int | None = None
        current = self.pipeline.serving()
        for record in records:
            if self.speed is not None:
                first_ts = record.timestamp_ms if first_ts is None else first_ts
                self._pace(started, (record.timestamp_ms - first_ts) / 1000.0 / self.speed)
            if record.topic == self.trigger_topic:
                try:
                    value = self.trigger.decode(record.value)
                except DecodeError:
                    value = None  # dead-lettered by the scorer, as it was in production
                if value is not None:
                    t = micros(value[self.time_field])
                    want = self.versions.get(str(value[self.id_field])) if self.versions is not None else None
                    if want is not None and want != current:
                        self._gate()
                        self.pipeline.swap(self.model, want)
                        current = want
                        self.stats.swaps += 1
                        lo = hi = None
                        in_chunk = 0
                    lo, hi = (t, t) if lo is None or hi is None else (min(lo, t), max(hi, t))
                    if hi - lo > self.span_us or in_chunk >= MAX_CHUNK:
                        self._gate()
                        lo = hi = t
                        in_chunk = 0
                in_chunk += 1
                self.stats.scored_inputs += 1
            self.reproducer.send(record)
            self.stats.records += 1
        self._gate()
        self.stats.wall_s = time.monotonic() - started
        return self.stats

    def _gate(self) -> None:
        """Publish what is queued and let the scorer consume all of it."""
        self.reproducer.flush()
        self.pipeline.drain(self.stats.scored_inputs)
        self.stats.chunks += 1
        self.on_progress(self.stats.records)

    def _pace(self, started: float, due_s: float) -> None:
        wait = started + due_s - time.monotonic()
        if wait > 0:
            self._gate()
            self.pipeline.wait(wait)
