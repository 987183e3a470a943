"""The Faust runtime of one stage: a faust-streaming app whose agent hosts the same I/O protocol as the Kafka runtime.

Faust owns the group membership (its co-partitioning assignor: every input's partition N goes to one worker), the
fetching, the rebalances and the commits; :class:`~slipstream.streams.engine.stage_io.StageIO` does the stage's work.
Every call into the protocol runs on one I/O thread per worker (decode, apply, Redis writes, the producers' flush, the
changelog restore), so the event loop never blocks and the protocol is never entered twice at once.

Offsets: the agent reads without acknowledging (``noack_take``), and Faust commits nothing by itself. Every
``commit_interval_s`` the outputs are flushed and the runtime commits :meth:`StageIO.plan_commit` through Faust's
consumer, one commit at a time, never backwards and only for partitions it still owns; the state's replay floors move
on only for what the broker took (:mod:`.replay_floor`). A revoke flushes, commits and drops the partitions' state
before Faust's own revoke (the Faust defects this works around are in :mod:`.faust_patches`).

State: a partition's state is rebuilt from the same changelog partition as in the Kafka runtime, its input paused
meanwhile (Faust would resume it after the rebalance; the patched consumer keeps it paused), a slice per step.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any

from slipstream.schemas.contracts import Contracts
from slipstream.schemas.topics import TopicCatalog
from slipstream.schemas.transport import TopicAdmin
from slipstream.schemas.transport.connection import kafka_config, list_topics
from slipstream.streams.engine.faust_patches import FaustHooks, faust_app, topic_partition
from slipstream.streams.engine.outputs import KafkaOutputs
from slipstream.streams.engine.restore import ChangelogRestore
from slipstream.streams.engine.settings import EngineSettings, ReportGate, StageStats
from slipstream.streams.engine.stage_io import StageIO, engine_group
from slipstream.streams.engine.topology import StageSpec, Topology

log = logging.getLogger(__name__)


class _Message:
    """A Faust message as the protocol reads messages (confluent-kafka's shape)."""

    __slots__ = ("_m",)

    def __init__(self, message: Any) -> None:
        self._m = message

    def topic(self) -> str:
        return str(self._m.topic)

    def partition(self) -> int:
        return int(self._m.partition)

    def offset(self) -> int:
        return int(self._m.offset)

    def key(self) -> bytes | None:
        return self._m.key  # type: ignore[no-any-return]

    def value(self) -> bytes | None:
        return self._m.value  # type: ignore[no-any-return]

    def headers(self) -> Any:
        return self._m.headers

    def timestamp(self) -> tuple[int, int]:
        ts = self._m.timestamp
        return (1, round(ts * 1000)) if ts is not None else (0, 0)


class FaustStageRunner(FaustHooks):
    """Runs one stage as a Faust app (group: the stage's group, as in the Kafka runtime); ``run`` as
    :class:`~slipstream.streams.engine.runner.StageRunner`'s."""

    def __init__(
        self,
        settings: EngineSettings,
        contracts: Contracts,
        topology: Topology,
        stage: StageSpec,
        *,
        on_batch: Callable[[StageStats], None] | None = None,
    ) -> None:
        self.settings = settings
        contracts = contracts.with_topics(topology.topics())
        self.contracts = contracts
        self.topology = topology
        self.stage = stage
        self._on_batch = on_batch
        StageIO.check(contracts, topology, stage)
        self.group = engine_group(contracts.catalog.prefix, topology.feature_set.name, stage.name)
        self.io = StageIO(settings, contracts, topology, stage, KafkaOutputs.for_stage(settings, contracts))
        self.stats = self.io.stats
        self.processor = self.io.processor
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"faust-io-{stage.name}")
        self._restoring = ChangelogRestore(
            settings.bootstrap_servers, self.io.changelog, slice_s=settings.restore_slice_s
        )
        self.restoring: set[Any] = set()  # TPs kept paused by the patched consumer until restored
        self._owned: set[int] = set()
        self._next_offsets: dict[tuple[str, int], int] = {}
        self._last_commit = 0.0
        self._commit_lock: asyncio.Lock | None = None  # made on the app's loop: one commit at a time
        self._last_marker = 0.0
        self._applied = 0  # batches applied (I/O thread)
        self._ends: dict[Any, int] = {}  # input end offsets asked of the broker, for the idle markers
        self._ends_after = -1  # ... when ``_applied`` was this: valid only while no batch came since
        self._last_ends = 0.0
        self._input_partitions = 0
        self._forward_partitions = 0
        self._reports = ReportGate(settings.report_interval_s)
        self._stop = threading.Event()  # run()'s; under Faust's own CLI, Faust stops the worker
        self._until_idle_s: float | None = None
        self._failure: BaseException | None = None
        self.app: Any = None

    # ------------------------------------------------------------------ lifecycle
    def run(self, stop: threading.Event, *, until_idle_s: float | None = None) -> StageStats:
        self._stop, self._until_idle_s = stop, until_idle_s
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()
            self.close()
        if self._failure is not None:
            raise self._failure
        if self._on_batch is not None:
            self._on_batch(self.stats)
        return self.stats

    def make_app(self) -> Any:
        """The stage's Faust app, ready for ``app.start()`` or Faust's own ``faust -A … worker``: the internal topics
        exist (Faust never creates the topics it reads), and a task runs the restore, markers, commits and reports."""
        internal = TopicCatalog(self.contracts.catalog.prefix, self.topology.topics())
        TopicAdmin(self.settings.bootstrap_servers).apply(internal)
        self._input_partitions, self._forward_partitions = self._metadata()
        self.app = faust_app(self, self.settings, self.group, list(self.io.inputs), tempfile.mkdtemp(prefix="faust-"))

        async def housekeeping() -> None:
            while not self._stop.is_set():
                await asyncio.sleep(0.01)
                await self._tick()
                if self._failure is not None:
                    raise self._failure  # Faust crashes the app: its worker exits with the error

        self.app.task(housekeeping)
        return self.app

    def close(self) -> None:
        with ExitStack() as closing:  # each whatever the others raise; run last to first
            closing.callback(self.io.outputs.close, discard=True)
            closing.callback(self._restoring.close)
            closing.callback(self._thread.shutdown, wait=True)  # first: a job still on the I/O thread uses them

    async def _main(self) -> None:
        app = self.make_app()
        await app.start()
        try:
            while not self._stop_now():
                await asyncio.sleep(0.01)
        finally:
            await app.stop()  # the app hands its partitions over first (hand_over), unless the stage failed

    def _metadata(self) -> tuple[int, int]:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(kafka_config(self.settings.bootstrap_servers))
        md = list_topics(admin, 10.0).topics
        first = md[next(iter(self.io.inputs))]
        forward = len(md[self.io.forward_topic].partitions) if self.io.forward_topic else 0
        return len(first.partitions), forward

    def _stop_now(self) -> bool:
        if self._stop.is_set() or self._failure is not None:
            return True
        if self._until_idle_s is None or not self._owned or self.restoring or self.processor.pending():
            return False
        return time.monotonic() - self.stats.last_batch_at > self._until_idle_s

    async def _io(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    # ------------------------------------------------------------------ Faust's calls (FaustHooks)
    async def on_batch(self, events: list[Any]) -> None:
        """A batch the agent took, applied on the I/O thread (nothing is acknowledged: the runtime commits)."""
        if self._failure is not None:
            return
        # Events of an older generation, taken before a rebalance, are read again from the commit: applied now, after
        # a restore, they would run ahead of the partition's next offset.
        generation = self.app.consumer_generation_id
        messages = [e.message for e in events if e.message.generation_id == generation]
        try:
            await self._io(self._apply, messages)
        except asyncio.CancelledError:  # Faust stopping its agent: the batch stays unacknowledged, read again
            raise
        except Exception as exc:  # noqa: BLE001 - stops the run; nothing after it is committed
            self._failure = exc
            return
        self.stats.last_batch_at = time.monotonic()

    def _apply(self, messages: list[Any]) -> None:
        for m in messages:
            if m.partition not in self._owned:  # fetched before a revoke or before its restore: read again later
                continue
            key = (m.topic, m.partition)
            self._next_offsets[key] = max(self._next_offsets.get(key, 0), m.offset + 1)
            self.io.ingest(_Message(m))
        if messages:
            self._applied += 1
            if self.stage.direct and self.io.forward_topic:
                self.io.retract_idle(self._owned, self._input_partitions, self._forward_partitions)
        self.io.drain(datetime.now(UTC))
        self._markers(got=True)
        self.io.outputs.poll()

    async def _tick(self) -> None:
        """Restore slices, markers, outputs due by time, the commit, progress reports."""
        if self._restoring.partitions:
            await self._restore_step()
        now = time.monotonic()
        if (
            self.stage.direct
            and self.io.forward_topic
            and self._owned
            and now - self._last_ends >= self.settings.idle_check_s
        ):
            self._last_ends = now
            await self._ask_ends()
        await self._io(self._due)
        now = time.monotonic()
        if now - self._last_commit >= self.settings.commit_interval_s and self._next_offsets:
            await self._commit(set(self.app.consumer.assignment()))
            self._last_commit = now
        if self._on_batch is not None and self._reports.due(now, changed=True):
            self._on_batch(self.stats)

    def _due(self) -> None:
        self.io.drain(datetime.now(UTC))
        self._markers(got=False)
        self.io.outputs.poll()

    def _markers(self, *, got: bool) -> None:
        """As the Kafka runtime: every ``marker_interval_s`` while events arrive, every ``idle_check_s`` when idle."""
        if not (self.stage.direct and self.io.forward_topic and self._owned):
            return
        since = time.monotonic() - self._last_marker
        if since < self.settings.marker_interval_s or (not got and since < self.settings.idle_check_s):
            return
        self._last_marker = time.monotonic()
        self._send_markers()

    async def _ask_ends(self) -> None:
        """The end offset of every owned input partition, asked of the broker now (the ends cached from fetches can be
        older than a batch already applied: a label written before a transaction could still be on its way)."""
        asked_after = self._applied
        tps = [topic_partition(topic, p) for topic in self.io.inputs for p in self._owned]
        try:
            ends = await self.app.consumer.highwaters(*tps)
        except Exception as exc:  # noqa: BLE001 - a slow broker: no partition is claimed idle until it answers
            log.warning("%s: cannot ask the input ends (%s); asking again", self.io.name, exc)
            return
        self._ends = {topic_partition(tp.topic, tp.partition): int(end) for tp, end in ends.items()}
        self._ends_after = asked_after

    def _send_markers(self) -> None:
        consumer = self.app.consumer
        fresh = self._ends_after == self._applied  # asked after the last batch was applied
        held = {}
        for topic, logical in self.io.inputs.items():
            for p in self._owned:
                tp = topic_partition(topic, p)
                high = self._ends.get(tp) if fresh else None
                # nothing consumed here yet (an empty partition, or all of it committed before): where it starts
                position = self._next_offsets.get((topic, p), consumer._committed_offset.get(tp) or 0)
                held[(logical, p)] = high is not None and position >= high
        self.io.send_markers(held, self._input_partitions, self._forward_partitions)

    async def _commit(self, tps: set[Any], *, handing_over: bool = False) -> None:
        """Flush, commit the plan's points of ``tps``, and confirm to the state the partitions the broker took.

        One commit at a time, each checked under the lock: a partition is committed only while this worker owns it
        (or hands it over now), and never behind what it already committed, so a periodic commit planned before a
        hand-over can never move the group's offset back after it."""
        plan = await self._io(self._plan)
        if self._commit_lock is None:
            self._commit_lock = asyncio.Lock()
        async with self._commit_lock:
            wanted = {
                topic_partition(topic, partition): at
                for (topic, partition), at in plan.offsets.items()
                if topic_partition(topic, partition) in tps and (handing_over or partition in self._owned)
            }
            taken = await self.app.consumer.commit_offsets(wanted) if wanted else set()
        covered, _ = plan.covered({(tp.topic, tp.partition): at for tp, at in wanted.items() if tp in taken})
        if covered:
            await self._io(self.io.committed, plan, covered)

    def _plan(self) -> Any:
        return self.io.plan_commit(self._next_offsets, 30)

    async def hand_over(self, revoked: set[Any], *, stopping: bool = False) -> None:
        """Before Faust's revoke: what is done is flushed and committed, then the partitions' state is dropped."""
        gone = {tp.partition for tp in revoked}
        had = gone & self._owned
        # A new set, never changed in place: the I/O thread may be iterating the old one. Batches still in flight
        # for the partitions gone are not applied any more.
        self._owned = self._owned - gone
        self._ends = {}  # asked while they were ours: no idle claim from them when they come back
        if had and self._failure is None:
            if self.stage.direct and self.io.forward_topic and not stopping:  # as the Kafka runtime's close
                await self._io(self.io.hand_over, had, self._input_partitions, self._forward_partitions)
            await self._commit(revoked, handing_over=True)
        for key in [k for k in self._next_offsets if k[1] in gone]:
            del self._next_offsets[key]
        self._restoring.cancel(gone)
        self.restoring = {tp for tp in self.restoring if tp.partition not in gone}
        await self._io(self.io.forget, gone)

    async def on_assigned(self, assigned: set[Any]) -> None:
        """After the rebalance, before Faust resumes: new partitions stay paused until their state is restored."""
        mine = {tp for tp in assigned if tp.topic in self.io.inputs}
        numbers = {tp.partition for tp in mine} - self._owned
        self.restoring |= {tp for tp in mine if tp.partition in numbers}
        await self._io(self._restoring.start, numbers)
        await self._restore_step()

    async def _restore_step(self) -> None:
        done: set[int] = await self._io(self._restoring.step, self.io.restore)
        if not done:
            return
        self._owned = self._owned | done  # a new set: the I/O thread may be iterating the old one
        self._ends = {}
        await self._io(self.io.took_over)
        resumed = {tp for tp in self.restoring if tp.partition in done}
        self.restoring -= resumed
        if resumed:
            self.app.consumer.resume_partitions(resumed)
        self.stats.last_batch_at = time.monotonic()


__all__ = ["FaustStageRunner"]
