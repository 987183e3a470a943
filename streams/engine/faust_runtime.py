"""The Faust runtime of one stage: a faust-streaming app whose agent hosts the same I/O protocol as the Kafka runtime.

Faust owns the group membership (its co-partitioning assignor: every input's partition N goes to one worker), the
fetching, the rebalances and the commits; :class:`~slipstream.streams.engine.stage_io.StageIO` does the stage's work.
Every call into the protocol runs on one I/O thread per worker (decode, apply, Redis writes, the producers' flush, the
changelog restore), so the event loop never blocks and the protocol is never entered twice at once.

Offsets: the agent reads without acknowledging (``noack_take``). Every ``commit_interval_s`` the outputs are flushed,
the events before :meth:`StageIO.commit_points` are acknowledged and the agent asks Faust to commit: Faust commits the
acknowledged run, never past an event still waiting for a watermark (two Faust defects are mended in
:mod:`.faust_patches`). A revoke flushes, commits and drops the partitions' state before Faust's own revoke.

State: a partition's state is rebuilt from the same changelog partition as in the Kafka runtime, its input paused
meanwhile (Faust would resume it after the rebalance; the patched consumer keeps it paused), a slice per step.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import threading
import time
from collections import deque
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
        self._held: dict[tuple[str, int], deque[Any]] = {}  # events not acknowledged yet, in offset order
        self._next_offsets: dict[tuple[str, int], int] = {}
        self._last_commit = 0.0
        self._last_marker = 0.0
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
        """A batch the agent took: applied on the I/O thread, held until a commit point passes it."""
        if self._failure is not None:
            return
        try:
            await self._io(self._apply, [e.message for e in events])
        except asyncio.CancelledError:  # Faust stopping its agent: the batch stays unacknowledged, read again
            raise
        except Exception as exc:  # noqa: BLE001 - stops the run; nothing after it is acknowledged
            self._failure = exc
            return
        for event in events:
            m = event.message
            if m.partition in self._owned:  # else revoked meanwhile: not applied, its new owner reads it
                self._held.setdefault((m.topic, m.partition), deque()).append(event)
        self.stats.last_batch_at = time.monotonic()

    def _apply(self, messages: list[Any]) -> None:
        for m in messages:
            if m.partition not in self._owned:  # fetched before a revoke or before its restore: read again later
                continue
            self._next_offsets[(m.topic, m.partition)] = m.offset + 1
            self.io.ingest(_Message(m))
        self.io.drain(datetime.now(UTC))
        self._markers(got=True)
        self.io.outputs.poll()

    async def _tick(self) -> None:
        """Restore slices, markers, outputs due by time, the commit, progress reports."""
        if self._restoring.partitions:
            await self._restore_step()
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

    def _send_markers(self) -> None:
        consumer = self.app.consumer
        held = {}
        for topic, logical in self.io.inputs.items():
            for p in self._owned:
                tp = topic_partition(topic, p)
                high = consumer.highwater(tp)  # from the fetches; None before the first
                # nothing consumed here yet (an empty partition, or all of it committed before): where it starts
                position = self._next_offsets.get((topic, p), consumer._committed_offset.get(tp) or 0)
                held[(logical, p)] = high is not None and position >= high
        if not any(held.values()):
            return
        payload = self.io.marker_payload(held, self._input_partitions)
        for p in range(self._forward_partitions):
            self.io.outputs.forward(self.io.forward_topic or "", b"", payload, p)

    async def _commit(self, tps: set[Any]) -> None:
        """Flush, acknowledge every event before its partition's commit point, let Faust commit, tell the state."""
        plan = await self._io(self._plan)
        points = self.app.consumer.commit_points
        for (topic, partition), at in plan.offsets.items():
            held = self._held.get((topic, partition))
            while held and held[0].message.offset < at:
                held.popleft().ack()
            tp = topic_partition(topic, partition)
            if tp in tps:
                points[tp] = at
        if tps:
            await self.app.consumer.commit(tps)
        await self._io(self.io.committed, plan)

    def _plan(self) -> Any:
        self.io.flush(30)
        return self.io.commit_points(self._next_offsets)

    async def hand_over(self, revoked: set[Any]) -> None:
        """Before Faust's revoke: what is done is flushed and committed, then the partitions' state and held events
        are dropped (acknowledged after the commit, so Faust neither commits them nor waits for them)."""
        gone = {tp.partition for tp in revoked}
        had = gone & self._owned
        self._owned -= gone  # batches still in flight for them are not applied any more
        if had and self._failure is None:
            await self._commit(revoked)
        for key in [k for k in self._held if k[1] in gone]:
            for event in self._held.pop(key):
                event.ack()
        for key in [k for k in self._next_offsets if k[1] in gone]:
            del self._next_offsets[key]
            self.app.consumer.commit_points.pop(topic_partition(*key), None)
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
        self._owned |= done
        resumed = {tp for tp in self.restoring if tp.partition in done}
        self.restoring -= resumed
        if resumed:
            self.app.consumer.resume_partitions(resumed)
        self.stats.last_batch_at = time.monotonic()


__all__ = ["FaustStageRunner"]
