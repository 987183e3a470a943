"""One stage of the online engine, as pure logic: events in, state changes and outputs out. No Kafka, no Redis,
no clock (the caller passes the wall time), so it is tested without a broker and replays reproduce production.

Per event: apply it to the state of every view of this stage that reads its source (duplicates change nothing),
then queue its *output*: the stage's view values as of the event's time (an online-store row per view and entity)
and, for trigger events, the features so far — forwarded to the next stage, or, in the last stage, the complete
vector for the feature log. An output at time ``t`` is computed only once every source the stage's views read has
reached ``t`` (its watermark), so labels and transactions consumed at different speeds give the same result.

Direct stages (reading producer topics) track one watermark per input partition: the newest event time seen.
An event older than that by more than ``lateness_us`` is dead-lettered as late. One within the lateness is applied
in its place, and every later trigger event of the same entity that its windows reach is recomputed and sent on
again: the feature log's last record for an event id is the correct one.
Internal stages learn their upstream watermarks from markers that upstream stages send to every partition.

Bounded state: an entity none of whose events any output the stage can still compute can reach is evicted (its
state dropped, a tombstone sent to the changelog); the rule and why it changes no feature are in
:mod:`slipstream.streams.engine.eviction` and :meth:`StageProcessor.horizon`.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from slipstream.features.base import Aggregate, FeatureView
from slipstream.features.online_store import FeatureRow
from slipstream.features.windows import (
    EPOCH,
    EntityState,
    compute_view,
    event_id_int,
    feature_vector,
)
from slipstream.streams.engine.eviction import HOUR_US, IdleIndex
from slipstream.streams.engine.internal import (
    InternalChecks,
    encode_internal,
    state_key,
    state_key_parts,
    watermark_source,
)
from slipstream.streams.engine.partition_watermarks import PartitionWatermarks
from slipstream.streams.engine.replay_floor import ReplayFloors
from slipstream.streams.engine.topology import StageSpec, Topology
from slipstream.streams.engine.upstream import IDLE, NO_WATERMARK, UpstreamMarks

_US = timedelta(microseconds=1)


def us_to_datetime(micros: int) -> datetime:
    return EPOCH + micros * _US


@dataclass(slots=True)
class PendingEvent:
    """An event waiting for its output (ordered by time, then sources known later first, then id)."""

    time_us: int
    order: int
    event_id: int
    seq: int
    topic: str = field(compare=False)
    record: dict[str, Any] = field(compare=False)
    carried: dict[str, float] = field(compare=False)
    newest_us: int = field(compare=False)
    ref: Any = field(compare=False, default=None)


@dataclass(slots=True)
class StageOutput:
    """Everything one drain produced; the runner sends it, then commits."""

    forwards: list[tuple[bytes, bytes]] = field(default_factory=list)  # (key, value) to the next stage
    vectors: list[dict[str, Any]] = field(default_factory=list)  # feature-log records
    rows: list[FeatureRow] = field(default_factory=list)  # online-store rows
    row_items: list[PendingEvent] = field(default_factory=list)  # the event each row was computed for (dead letters)
    late: list[tuple[Any, str]] = field(default_factory=list)  # (message ref, reason) to dead-letter
    changelog: list[tuple[int, bytes, bytes]] = field(default_factory=list)  # (partition, key, state)
    states: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)  # (view, key values) per changelog entry
    evicted: list[tuple[int, bytes, str, tuple[Any, ...]]] = field(default_factory=list)  # (partition, key, view, keys)
    applied: int = 0
    duplicates: int = 0


class StageProcessor:
    def __init__(
        self, topology: Topology, stage: StageSpec, *, lateness_us: int = 0, evict_bucket_us: int | None = HOUR_US
    ) -> None:
        """``evict_bucket_us``: the eviction sweep's granularity (see :mod:`~slipstream.streams.engine.eviction`);
        ``None`` keeps every entity for ever (the never-evicting engine the tests hold eviction to)."""
        self.topology = topology
        self.stage = stage
        self.feature_set = topology.feature_set
        self.lateness_us = lateness_us
        self.states: dict[bytes, EntityState] = {}
        self._dirty: dict[bytes, int] = {}
        self._parts: dict[bytes, tuple[str, tuple[Any, ...]]] = {}  # state key -> (view, key values)
        self._owner: dict[bytes, int] = {}  # state key -> partition it belongs to
        self._replay = ReplayFloors()  # partition -> oldest event time a restart could read again
        self._pending: dict[int, list[tuple[int, int, int, int, PendingEvent]]] = {}  # heap per partition
        self._seq = 0
        self._partition_wm = PartitionWatermarks()  # direct: newest time per (source, partition), kept across restarts
        self._idle = IdleIndex(evict_bucket_us) if evict_bucket_us is not None else None
        self.evicted = 0
        self._views_by_source: dict[str, list[FeatureView]] = {}
        for view in stage.views:
            for source in view.sources:
                self._views_by_source.setdefault(source.topic, []).append(view)
        self._gating = tuple(sorted(self._views_by_source))
        self._slack = {topic: self._source_slack(topic) for topic in self._gating}
        self._upstream = UpstreamMarks(self._gating, self._slack)  # internal stages: what upstream partitions sent
        self._reach = max(v.reach_us for v in stage.views)
        self._view_reach = {v.name: v.reach_us for v in stage.views}
        self._checks = InternalChecks(topology, self._views_by_source)
        self._out = StageOutput()

    def _source_slack(self, topic: str) -> int:
        """How far behind an output's time a source may still be: its smallest window delay (0 if known_by)."""
        delays: list[int] = []
        for view in self._views_by_source[topic]:
            if view.source(topic).known_by:
                return 0
            delays.extend(f.window.delay_us for f in view.features if isinstance(f, Aggregate) and f.source == topic)
        return min(delays, default=0)

    # ------------------------------------------------------------------ state
    def restore(self, partition: int, key: bytes, value: bytes | None) -> None:
        """Replay one changelog record (the newest per key wins, as in a compacted topic)."""
        source = watermark_source(key)
        if source is not None:
            self._partition_wm.restore(partition, source, value)
        elif value is None:
            self.states.pop(key, None)
            self._owner.pop(key, None)
            if self._idle is not None:
                self._idle.discard(key)
        else:
            state = self.states[key] = EntityState.from_bytes(value)
            self._owner[key] = partition
            if self._idle is not None:
                view = state_key_parts(key)[0]
                self._idle.file(partition, key, state.last_us() + self._view_reach.get(view, self._reach))

    def _entity(
        self, view: FeatureView, record: Mapping[str, Any], partition: int
    ) -> tuple[tuple[Any, ...], EntityState]:
        key_values = tuple(record[k] for k in view.entity.join_keys)
        key = state_key(view.name, key_values)
        state = self.states.get(key)
        if state is None:
            state = self.states[key] = EntityState()
        self._dirty[key] = partition
        self._owner[key] = partition
        self._parts[key] = (view.name, key_values)
        return key_values, state

    # ------------------------------------------------------------------ input
    def internal_problem(self, payload: Mapping[str, Any]) -> str | None:
        """Why a decoded message of an internal topic cannot be processed here (``None`` when it can): checked before
        anything is applied, so a malformed one is dead-lettered whole, never half applied."""
        return self._checks.problem(payload)

    def on_event(
        self,
        partition: int,
        topic: str,
        record: dict[str, Any],
        *,
        ref: Any = None,
        carried: Mapping[str, float] | None = None,
        newest_us: int | None = None,
        position: tuple[str, int] | None = None,
    ) -> None:
        """One event of ``topic`` (a logical source name), times as epoch microseconds; ``position``: the (input
        topic, offset) it was read at, which a commit must pass before a restart no longer replays it."""
        time_us, order, event_id, known_us = self._place(topic, record)
        self._replay.consumed(partition, time_us, position)
        if self.stage.direct:
            newest = self._partition_wm.admit(topic, partition, known_us, self.lateness_us, position)
            if newest is not None:
                lag = (newest - known_us) / 1e6
                reason = (
                    f"late {topic} event {event_id}: event time {us_to_datetime(known_us).isoformat()} is {lag:.3f} s "
                    f"behind partition {partition}'s newest event; allowed lateness is {self.lateness_us / 1e6:g} s"
                )
                self._out.late.append((ref, reason))
                return
        late_entities = self._apply(partition, topic, record, time_us)
        self._queue(partition, topic, record, time_us, order, event_id, dict(carried or {}), newest_us or known_us, ref)
        for late in late_entities:
            self._recompute_after(partition, late, time_us, event_id)

    def _place(self, topic: str, record: Mapping[str, Any]) -> tuple[int, int, int, int]:
        views = self._views_by_source.get(topic)
        if views:
            source = views[0].source(topic)
            time_us = int(record[source.time_field])
            known_us = int(record[source.known_by]) if source.known_by else time_us
            return known_us, 0 if source.known_by else 1, event_id_int(record[source.id_field]), known_us
        time_us = int(record["event_time"])
        return time_us, 1, event_id_int(record.get("transaction_id", record.get("event_id", 0))), time_us

    def _apply(
        self, partition: int, topic: str, record: Mapping[str, Any], time_us: int
    ) -> list[tuple[FeatureView, EntityState, tuple[Any, ...]]]:
        late: list[tuple[FeatureView, EntityState, tuple[Any, ...]]] = []
        for view in self._views_by_source.get(topic, ()):
            key_values, state = self._entity(view, record, partition)
            was_newest = state.newest_us
            if state.apply(view.source(topic), record, view.reach_us, self.lateness_us, prune=False):
                self._out.applied += 1
                if topic == self.feature_set.trigger and self.stage.direct and time_us < was_newest:
                    late.append((view, state, key_values))
            else:
                self._out.duplicates += 1
        return late

    def _queue(
        self,
        partition: int,
        topic: str,
        record: dict[str, Any],
        time_us: int,
        order: int,
        event_id: int,
        carried: dict[str, float],
        newest_us: int,
        ref: Any = None,
    ) -> None:
        self._seq += 1
        item = PendingEvent(time_us, order, event_id, self._seq, topic, record, carried, newest_us, ref)
        heapq.heappush(self._pending.setdefault(partition, []), (time_us, order, event_id, self._seq, item))

    def _recompute_after(
        self, partition: int, late: tuple[FeatureView, EntityState, tuple[Any, ...]], time_us: int, eid: int
    ) -> None:
        """A late trigger event landed before others of its entity: send those its windows reach on again."""
        view, state, key_values = late
        source = view.source(self.feature_set.trigger)
        ring = state.rings[source.topic]
        for i, (t, other) in enumerate(zip(ring.times, ring.ids, strict=True)):
            if (t, other) <= (time_us, eid) or t > time_us + view.reach_us:
                continue
            record: dict[str, Any] = {source.id_field: other, source.time_field: t}
            record.update(zip(view.entity.join_keys, key_values, strict=True))
            record.update({name: column[i] for name, column in ring.values.items()})
            self._queue(partition, source.topic, record, t, 1, other, {}, t)

    def on_marker(
        self, partition: int, source: str, upstream: int, upstream_n: int, time_us: int, *, floor: bool = True
    ) -> None:
        """Upstream partition ``upstream`` of ``source`` has sent everything up to ``time_us`` to this partition
        (:meth:`UpstreamMarks.marker`; ``floor``: the watermark also bounds how old its next events can be)."""
        self._upstream.marker(partition, source, upstream, upstream_n, time_us, floor=floor)

    def frontier(self, partition: int) -> int:
        """Time up to which outputs on ``partition`` are due: every source the views read has reached it.

        A source read only through delayed windows (terminal transactions: ``t - 7 d``) need only reach ``t`` less
        the smallest delay; a source counted by when it became known (labels) must reach ``t`` itself.
        """
        if self.stage.direct:
            return IDLE  # one ordered input per partition: outputs are due at once
        return self._upstream.frontier(partition)

    # ------------------------------------------------------------------ output
    def drain(self, now: datetime) -> StageOutput:
        """Compute every output that is due; return them with the state changes to persist."""
        computed_at = now.astimezone(UTC)
        for partition, queue in self._pending.items():
            frontier = self.frontier(partition)
            while queue and queue[0][0] <= frontier:
                self._emit(partition, heapq.heappop(queue)[-1], computed_at)
        idle = self._idle
        bounds: dict[int, int | None] = {}
        for key, partition in self._dirty.items():
            state = self.states[key]
            if partition not in bounds:
                bounds[partition] = self._prune_bound(partition)
            bound = bounds[partition]
            if bound is not None:
                state.prune(min(state.newest_us, bound) - self._reach - self.lateness_us)
            self._out.changelog.append((partition, key, state.to_bytes()))
            parts = self._parts[key]
            self._out.states.append(parts)
            if idle is not None:
                idle.file(partition, key, state.last_us() + self._view_reach[parts[0]])
        self._dirty.clear()
        if idle is not None:
            for partition in idle.partitions():
                self._evict(partition, idle)
        out, self._out = self._out, StageOutput()
        return out

    def horizon(self, partition: int) -> int | None:
        """The oldest time at which this stage can still compute an output on ``partition`` (``None``: not known yet).

        Outputs are computed at the time of an event (for a source known later, such as labels, when it became
        known). Three things bound the time of every output to come:

        - events still to be read: a direct stage refuses, per input topic and partition, any event older than the
          newest one less the allowed lateness; an internal stage gets from each upstream partition only events at
          or after the last floor it sent (:meth:`floors`: computed the same way upstream, and lowered to what the
          upstream would replay after a restart);
        - outputs still pending on the partition;
        - events consumed since the last commit the broker acknowledged (a crash replays them).

        Only the sources the stage's views read count (other sources pass through, computing nothing here).
        """
        floor = IDLE
        if self.stage.direct:
            for topic in self._gating:
                newest = self._partition_wm.get(topic, partition)
                if newest is None:
                    return None
                floor = min(floor, newest - self.lateness_us)
        else:
            upstream_floor = self._upstream.floor(partition)
            if upstream_floor is None:
                return None
            floor = upstream_floor
        pending = self._pending.get(partition)
        if pending:
            floor = min(floor, pending[0][0])
        replay_floor = self._replay.floor(partition)
        if replay_floor is not None:
            floor = min(floor, replay_floor)
        return floor

    def _evict(self, partition: int, idle: IdleIndex) -> None:
        """Drop the entities of ``partition`` that no output to come can reach; their tombstones go to the output."""
        horizon = self.horizon(partition)
        if horizon is None or horizon <= NO_WATERMARK:
            return
        for key in idle.expired(partition, horizon):
            self.states.pop(key, None)
            self._owner.pop(key, None)
            parts = self._parts.pop(key, None) or state_key_parts(key)
            self._out.evicted.append((partition, key, *parts))
            self.evicted += 1

    def _prune_bound(self, partition: int) -> int | None:
        """The oldest time an output on ``partition`` can still be computed at, for pruning (``None``: not known yet,
        prune nothing); an entity keeps everything its windows reach from there, or from its newest event if older.

        A direct stage reads each entity's events in order from one partition: only outputs pending and events a
        restart would replay can be older than an entity's newest event. An internal stage also waits for events
        from every upstream partition, some far behind the others (a worker restoring, a slow fetch): those can be
        as old as the upstream's floor (:meth:`horizon`), whatever this entity's newest event is.
        """
        if not self.stage.direct:
            return self.horizon(partition)
        oldest = IDLE
        pending = self._pending.get(partition)
        if pending:
            oldest = pending[0][0]
        replay_floor = self._replay.floor(partition)
        if replay_floor is not None:
            oldest = min(oldest, replay_floor)
        return oldest

    def committed(self, partitions: Iterable[int]) -> None:
        """Everything consumed on ``partitions`` is committed: nothing of it will be replayed (a caller that commits
        without offsets; runtimes call :meth:`committed_offsets`)."""
        self._replay.committed_all(partitions)

    def committed_offsets(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """The broker took these (input topic, partition) -> next offsets: events before them will not be replayed.
        Never call it for a commit that failed or never ran (see :mod:`~slipstream.streams.engine.replay_floor`)."""
        self._replay.committed(offsets)
        self._partition_wm.committed(offsets)

    def checkpoint(self, offsets: Mapping[tuple[str, int], int]) -> list[tuple[int, bytes, bytes]]:
        """A commit at ``offsets`` is planned: changelog records ``(partition, key, value)`` to write (and flush)
        before it, so that a restart resumed there refuses as late what this worker would have
        (:mod:`~slipstream.streams.engine.partition_watermarks`). Nothing for an internal stage."""
        return self._partition_wm.checkpoint(offsets) if self.stage.direct else []

    def pending(self) -> int:
        return sum(len(q) for q in self._pending.values())

    def pending_refs(self, partition: int) -> list[Any]:
        """Message references of the events still waiting for their output on ``partition``."""
        return [entry[-1].ref for entry in self._pending.get(partition, ()) if entry[-1].ref is not None]

    def forget(self, partitions: set[int]) -> None:
        """Drop the state and pending outputs of partitions this worker no longer owns (after a rebalance)."""
        self._replay.forget(partitions)
        self._upstream.forget(partitions)
        for partition in partitions:
            self._pending.pop(partition, None)
        if self._idle is not None:
            self._idle.forget(partitions)
        for key in [k for k, p in self._owner.items() if p in partitions]:
            self.states.pop(key, None)
            self._owner.pop(key, None)
            self._parts.pop(key, None)
        self._partition_wm.forget(partitions)

    def _emit(self, partition: int, item: PendingEvent, computed_at: datetime) -> None:
        record = item.record
        is_trigger = item.topic == self.feature_set.trigger
        features = dict(item.carried)
        for view in self._views_by_source.get(item.topic, ()):
            key = state_key(view.name, tuple(record[k] for k in view.entity.join_keys))
            state = self.states[key]
            values = compute_view(
                view, state, item.time_us, item.topic if is_trigger else None, item.event_id if is_trigger else None
            )
            join_keys = {k: record[k] for k in view.entity.join_keys}
            self._out.rows.append(FeatureRow(view.name, join_keys, values, us_to_datetime(item.time_us)))
            self._out.row_items.append(item)
            features.update(values)
        if self.stage.forward_topic is not None:
            payload = {"src": item.topic, "rec": record, "feat": features, "nt": item.newest_us}
            key = str(record[self.stage.forward_key or ""]).encode()
            self._out.forwards.append((key, encode_internal(payload)))
        elif is_trigger:
            vector = feature_vector(self.feature_set, record, features, item.time_us, item.newest_us, computed_at)
            self._out.vectors.append(vector)

    def markers(self, idle: Mapping[tuple[str, int], bool], upstream_n: int) -> list[tuple[str, int, int]]:
        """Watermarks to broadcast downstream: (source, upstream partition, time) per input topic and partition.

        ``idle`` says, per (topic, partition) held, whether it is read to the end: then nothing older than what a
        downstream stage waits for can still come from it.
        """
        out = []
        for (topic, partition), caught_up in idle.items():
            known = self._partition_wm.get(topic, partition)
            newest = NO_WATERMARK if known is None else known
            pending = self._pending.get(partition)
            if pending:
                newest = min(newest, pending[0][0] - 1)
            if caught_up and not pending:
                out.append((topic, partition, IDLE))
            else:
                out.append((topic, partition, newest - self.lateness_us))  # a late event may still come this far back
        return out

    def floors(self, held: Iterable[tuple[str, int]]) -> list[tuple[str, int, int]]:
        """The oldest time any event still to be sent downstream can have, per input topic and partition held: the
        newest event less the allowed lateness (older ones are refused as late), or older, the oldest event a restart
        would replay and send again. Sent with the markers, also when they say "idle", so that a downstream stage
        knows its horizon (:meth:`horizon`) on a quiet input too."""
        out = []
        for topic, partition in held:
            newest = self._partition_wm.get(topic, partition)
            if newest is not None:
                floor = newest - self.lateness_us
                replay_floor = self._replay.floor(partition)  # a restart sends what it replays again
                out.append((topic, partition, floor if replay_floor is None else min(floor, replay_floor)))
        return out

    def on_floor(self, partition: int, source: str, upstream: int, time_us: int) -> None:
        """Upstream partition ``upstream`` of ``source`` will send this partition nothing older than ``time_us``."""
        self._upstream.floor_at(partition, source, upstream, time_us)
