"""The Kafka runtime of one stage: a confluent-kafka consumer group member hosting the stage's I/O protocol.

Per batch it hands each message of an owned partition to :class:`~slipstream.streams.engine.stage_io.StageIO`
(decode, dead letters, apply), drains and sends what is due, and every ``commit_interval_s`` flushes the outputs and
only then commits, no further than the protocol allows (:meth:`StageIO.plan_commit`). At-least-once delivery,
effectively-once state.

State: on assignment, every owned partition's state is rebuilt from the changelog partition of the same number,
outside the rebalance callback and a slice per step, its input paused meanwhile (:mod:`.restore`). A revoke flushes
and commits what is done, then drops the partitions' state, offsets and fetched records.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from slipstream.schemas.contracts import Contracts
from slipstream.schemas.topics import TopicCatalog
from slipstream.schemas.transport import TopicAdmin
from slipstream.schemas.transport.connection import kafka_config
from slipstream.streams.engine.base import StageOutputs
from slipstream.streams.engine.exceptions import StateError
from slipstream.streams.engine.outputs import KafkaOutputs
from slipstream.streams.engine.restore import ChangelogRestore
from slipstream.streams.engine.settings import COLOCATED_NICE, EngineSettings, ReportGate, StageStats
from slipstream.streams.engine.stage_io import CommitPlan, StageIO, engine_group
from slipstream.streams.engine.topology import StageSpec, Topology

log = logging.getLogger(__name__)


def quiet_gc() -> None:
    """For a process that hosts one stage and nothing else: entity state is many small lists, and the cyclic GC's
    full passes over them are the engine's longest pauses. State holds no reference cycles, so collect rarely and
    freeze what exists at start-up. Never in a shared process (threads mode, a test run, a caller's own program):
    the setting is the whole process's, and cyclic garbage it holds would live on."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(200_000, 50, 1000)


class StageRunner:
    """Runs one stage of one feature set as a member of the stage's consumer group."""

    def __init__(
        self,
        settings: EngineSettings,
        contracts: Contracts,
        topology: Topology,
        stage: StageSpec,
        *,
        on_batch: Callable[[StageStats], None] | None = None,
        outputs: StageOutputs | None = None,
    ) -> None:
        self.settings = settings
        contracts = contracts.with_topics(topology.topics())  # the set's repartitions and changelogs, derived
        self.contracts = contracts
        self.topology = topology
        self.stage = stage
        self._on_batch = on_batch
        StageIO.check(contracts, topology, stage)  # before any client exists: a refused topology leaks nothing
        group = engine_group(contracts.catalog.prefix, topology.feature_set.name, stage.name)
        config: dict[str, Any] = {
            **kafka_config(settings.bootstrap_servers),
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "range",  # same partition numbers of every input, co-partitioned
            "session.timeout.ms": settings.session_timeout_ms,
            # A rebalance is noticed at the next heartbeat: a worker joining or leaving takes effect within ~1 s of a
            # 10 s session, not librdkafka's 3 s.
            "heartbeat.interval.ms": max(100, settings.session_timeout_ms // 10),
            "fetch.wait.max.ms": settings.fetch_wait_max_ms,
            "fetch.min.bytes": settings.fetch_min_bytes,
            "socket.nagle.disable": True,  # no Nagle delay on small, latency-bound requests
            "queued.max.messages.kbytes": 65536,
            "on_commit": self._on_commit,  # served by poll(): the broker's answer to each asynchronous commit
        }
        if settings.worker_id is not None:
            config["group.instance.id"] = f"{group}-worker-{settings.worker_id}"
        self._consumer = Consumer(config)
        self.io = StageIO(settings, contracts, topology, stage, outputs or KafkaOutputs.for_stage(settings, contracts))
        self.processor = self.io.processor
        self.stats = self.io.stats
        self._inputs = self.io.inputs
        self._forward = self.io.forward_topic
        self._owned: set[int] = set()
        self._restoring = ChangelogRestore(
            settings.bootstrap_servers, self.io.changelog, slice_s=settings.restore_slice_s
        )
        self._rewind: dict[tuple[str, int], int] = {}  # (topic, partition) -> first offset fetched while restoring
        self._hand_over = True  # a revoke flushes and commits what is done (not once the stage has failed)
        self._caught_up: dict[tuple[str, int], bool] = {}  # (logical topic, partition) -> read to the end
        self._next_offsets: dict[tuple[str, int], int] = {}
        self._last_idle_check = 0.0
        self._forward_partitions = 0
        self._input_partitions = 0
        self._last_marker = 0.0
        self._last_commit = 0.0
        self._in_flight: deque[CommitPlan] = deque(maxlen=64)  # asynchronous commits not answered yet, oldest first
        self._announced = False
        self._reports = ReportGate(settings.report_interval_s)
        self._reported_data = False

    # ------------------------------------------------------------------ lifecycle
    def run(self, stop: threading.Event, *, until_idle_s: float | None = None) -> StageStats:
        """Process until ``stop`` is set (or, with ``until_idle_s``, until nothing arrived for that long)."""
        failed = True
        try:
            internal = TopicCatalog(self.contracts.catalog.prefix, self.topology.topics())
            TopicAdmin(self.settings.bootstrap_servers).apply(internal)  # idempotent; concurrent stages agree
            self._consumer.subscribe(
                list(self._inputs), on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
            )
            first = next(iter(self._inputs))
            self._input_partitions = len(self._consumer.list_topics(first, timeout=10).topics[first].partitions)
            if self._forward:
                md = self._consumer.list_topics(self._forward, timeout=10).topics[self._forward]
                self._forward_partitions = len(md.partitions)
            while not stop.is_set():
                got = self.step()
                if not self._owned:  # idle time counts only once partitions are ours
                    self.stats.last_batch_at = time.monotonic()
                elif until_idle_s is not None and not got and self.processor.pending() == 0:
                    if time.monotonic() - self.stats.last_batch_at > until_idle_s:
                        break
            failed = False
        finally:
            self.close(commit=not failed)
        if self._on_batch is not None and self._reports.pending:  # the last change, held back by the gate
            self._on_batch(self.stats)
        return self.stats

    def close(self, *, commit: bool = True) -> None:
        """Flush and commit (not after a failure: what was not written is read again on restart), then leave."""
        try:
            if commit:
                self._commit(wait=True, flush_s=10)
        finally:
            # Leaving the group revokes every partition: what was done is committed above, and after a failure
            # nothing may be, so the revoke hands nothing over. Each client is closed whatever the others do.
            self._hand_over = False
            with ExitStack() as closing:
                # flushed above; after a failure, what was not sent is read again
                closing.callback(self.io.outputs.close, discard=True)
                closing.callback(self._consumer.close)
                closing.callback(self._restoring.close)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Take the partitions at once and pause the new ones: their state is restored by :meth:`step`, a slice at a
        time, so this callback (which holds the poll loop) returns in milliseconds whatever the changelog holds."""
        consumer.assign(partitions)
        numbers = {tp.partition for tp in partitions} - self._owned - self._restoring.partitions
        waiting = [tp for tp in partitions if tp.partition in numbers]
        if waiting:
            consumer.pause(waiting)
        self._restoring.start(numbers)

    def _advance_restore(self) -> None:
        """One slice of the changelog; partitions restored to their end are owned and resumed."""
        before = self._restoring.records
        done = self._restoring.step(self.io.restore)
        if self._restoring.records != before:
            self.stats.last_batch_at = time.monotonic()
        if not done:
            return
        self._owned |= done
        self.io.took_over()
        resumed = [TopicPartition(topic, p) for topic in self._inputs for p in done]
        for tp in resumed:  # a message fetched before the pause took effect was dropped: read it again
            first = self._rewind.pop((tp.topic, tp.partition), None)
            if first is not None:
                self._consumer.seek(TopicPartition(tp.topic, tp.partition, first))
        self._consumer.resume(resumed)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions taken away without a hand-over (this member was fenced or timed out): another member may already
        own them, so nothing is flushed or committed for them; they are dropped, and read again by their owner."""
        self._drop({tp.partition for tp in partitions})

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Hand partitions over exactly: what is done is flushed and committed first (the next owner restores the
        state it produced and reads on from the offsets), then their state, pending outputs and offsets are dropped,
        so nothing of theirs is committed or applied here again."""
        gone = {tp.partition for tp in partitions}
        if self._owned & gone and self._hand_over:
            if self.stage.direct and self._forward:
                self.io.hand_over(self._owned & gone, self._input_partitions, self._forward_partitions)
            self._commit(wait=True)
        self._drop(gone)

    def _drop(self, gone: set[int]) -> None:
        self._restoring.cancel(gone)
        self.io.forget(gone)
        self._rewind = {k: v for k, v in self._rewind.items() if k[1] not in gone}
        self._owned -= gone
        for key in [k for k in self._next_offsets if k[1] in gone]:
            del self._next_offsets[key]
        for key in [k for k in self._caught_up if k[1] in gone]:
            del self._caught_up[key]

    # ------------------------------------------------------------------ one batch
    def step(self) -> bool:
        if self._restoring.partitions:
            self._advance_restore()
        first = self._consumer.poll(self.settings.poll_timeout_s)
        messages = [first, *self._consumer.consume(self.settings.batch_size - 1, 0)] if first is not None else []
        for msg in messages:
            self._ingest(msg)
        got = bool(messages)
        if got:
            # Data arrived: no partition is known to be read to its end any more, not only the ones it came on. A
            # label written before a transaction may still be on its way to this worker when the transaction is
            # here; "idle" is claimed again only by the next check, made after this batch was fetched.
            self._caught_up.clear()
            if self.stage.direct and self._forward:
                self.io.retract_idle(self._owned, self._input_partitions, self._forward_partitions)
            self.stats.last_batch_at = time.monotonic()
        out = self.io.drain(datetime.now(UTC))
        if self.stage.direct and self._forward:
            self._send_markers(got)
        self.io.outputs.poll()
        now = time.monotonic()
        if now - self._last_commit >= self.settings.commit_interval_s:
            # Outputs first, offsets after: a crash between the two replays the tail (idempotent), loses nothing.
            self._commit()
            self._last_commit = now
        self.stats.batches += 1
        self._report(now, changed=got or bool(out.rows))
        return got

    def _report(self, now: float, *, changed: bool) -> None:
        if self._on_batch is None:
            return
        announce = bool(self._owned) and not self._announced  # tell the caller once: partitions are ours
        first_data = self.stats.consumed > 0 and not self._reported_data  # ... and when the first events came
        if self._reports.due(now, changed=changed, urgent=announce or first_data):
            self._announced = self._announced or announce
            self._reported_data = self._reported_data or self.stats.consumed > 0
            self._on_batch(self.stats)

    def _ingest(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                return
            if err.fatal():
                text = f"consumer error: {err.str()}"
                raise StateError(text)
            return
        topic, partition, offset = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
        if partition not in self._owned:  # fetched before a rebalance took the partition away: its new owner reads it
            if partition in self._restoring.partitions:  # ... or before the pause took effect: read again on resume
                self._rewind[(topic, partition)] = min(self._rewind.get((topic, partition), offset), offset)
            return
        self._next_offsets[(topic, partition)] = offset + 1
        self.io.ingest(msg)

    def _send_markers(self, got: bool) -> None:
        now = time.monotonic()
        if now - self._last_idle_check > self.settings.idle_check_s:
            self._refresh_caught_up()  # broker round trips: not on every batch
            self._last_idle_check = now
        held = {(t, p): self._caught_up.get((t, p), False) for t in self._inputs.values() for p in self._owned}
        if not held or not self._forward:
            return
        if not got and now - self._last_marker < self.settings.idle_check_s:
            return
        if now - self._last_marker < self.settings.marker_interval_s:
            return
        self._last_marker = now
        self.io.send_markers(held, self._input_partitions, self._forward_partitions)

    def _refresh_caught_up(self) -> None:
        """Per input topic and partition: has this worker read everything the broker holds? (Then it is idle.)"""
        for p in self._owned:
            for topic, logical in self._inputs.items():
                tp = TopicPartition(topic, p)
                try:
                    _low, high = self._consumer.get_watermark_offsets(tp, cached=True)  # updated by every fetch
                    if high < 0:
                        _low, high = self._consumer.get_watermark_offsets(tp, timeout=5, cached=False)
                    position = self._next_offsets.get((topic, p))
                    if position is None:
                        committed = self._consumer.committed([TopicPartition(topic, p)], timeout=5)[0].offset
                        position = committed if committed >= 0 else 0
                        self._next_offsets[(topic, p)] = position
                    if position >= high:  # the cached end is as old as the last fetch: ask the broker now
                        _low, high = self._consumer.get_watermark_offsets(tp, timeout=5, cached=False)
                except KafkaException as exc:  # a slow broker (a loaded machine): not idle, asked again next time
                    log.warning("%s[%d]: cannot tell whether it is read to its end (%s); asking again", topic, p, exc)
                    self._caught_up[(logical, p)] = False
                    continue
                self._caught_up[(logical, p)] = position >= high

    def _commit(self, *, wait: bool = False, flush_s: float = 30) -> None:
        """Flush, then commit what is done; asynchronously on the hot path, synchronously at close. The state's
        replay floors move on only when the broker has taken the commit (:meth:`_on_commit`)."""
        plan = self.io.plan_commit(self._next_offsets, flush_s)
        offsets = [TopicPartition(topic, partition, at) for (topic, partition), at in plan.offsets.items()]
        if offsets and wait:
            done = self._consumer.commit(offsets=offsets, asynchronous=False)  # raises unless the broker took it
            self._confirm(plan, done or [])
        elif offsets:
            self._in_flight.append(plan)
            self._consumer.commit(offsets=offsets, asynchronous=True)

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """The broker's answer to a commit: the plans it covers are confirmed (a failed one is left to a later
        commit of the same partitions, which covers it)."""
        if err is not None:
            log.warning("%s: a commit failed (%s); its events stay replayable until a later commit", self.io.name, err)
            return
        waiting = [plan for plan in self._in_flight if not self._confirm(plan, partitions)]
        self._in_flight = deque(waiting, maxlen=self._in_flight.maxlen)

    def _confirm(self, plan: CommitPlan, done: list[TopicPartition]) -> bool:
        """Confirm ``plan`` for each partition whose every input ``done`` committed at least as far (offsets only
        grow, so a later commit covers an earlier plan whose own commit failed); ``True`` when that is all of the
        plan's partitions this worker still owns."""
        covered, short = plan.covered({(tp.topic, tp.partition): tp.offset for tp in done if tp.error is None})
        self.io.committed(plan, covered)
        return not short & self._owned


__all__ = ["COLOCATED_NICE", "EngineSettings", "ReportGate", "StageRunner", "StageStats", "engine_group", "quiet_gc"]
