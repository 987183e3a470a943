"""A monitoring :class:`~slipstream.monitoring.transactional.Handler` hosted by a Faust app, exactly once: the same
handler, topics, changelog and contract as :class:`~slipstream.monitoring.transactional.TransactionalProcessor`.
It lives in the composition root because it joins two parts that must not import each other: ``monitoring/`` (the
handler contract) and ``streams/`` (the Faust app and its consumer patches, shared with the feature engine).

The app is the feature engine's (:func:`slipstream.streams.engine.faust_patches.faust_app`: one agent over the
co-partitioned inputs, Faust's co-partitioning assignor, static membership, ``read_committed`` fetches with the
Kafka runtime's fetch sizes), so a client setting added there applies to both. Per batch the agent takes
(``noack_take``), the handler runs on one I/O thread (decode, process, ``at_end``, ``tick``, encode: the event loop
never blocks on it), then one transaction of an aiokafka producer (``transactional_id`` per worker, as on the Kafka
runtime) holds the outputs, changelog entries, dead letters and the batch's input offsets
(``send_offsets_to_transaction(offsets, group)``). Faust never commits an offset itself: the patched consumer commits
only the runtime's commit points, and this host sets none. So offsets move only inside transactions.

A partition's state is read back from its changelog partition (``read_committed``) while its input stays paused,
before any of its records is processed; a revoke waits for the transaction in flight, then ``handler.revoke``. Ticks
(``at_end`` and ``tick``) run about once a second also when nothing arrives.

Fencing (aiokafka 0.14 sends ``TxnOffsetCommit`` v0: a group id, no generation or member id, so no KIP-447): the
producer's epoch fences an older process under the same ``transactional_id`` (a restarted worker); a zombie whose
partitions moved to a worker with another id is not fenced by the group. The window is narrowed, not closed: a batch
is committed only for partitions the consumer still holds (docs/architecture.md, "Zombie fencing, per runtime").

A transaction that fails is aborted and the run stops with the error (exit 1): nothing of the batch is visible, and
a restart under the same worker id resumes from the committed offsets and state (the Kafka runtime rewinds in place).
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiokafka import AIOKafkaProducer

from slipstream.faust_transactions import commit_batch, fetch_state
from slipstream.monitoring.batch_encoding import BatchEncoder, Out
from slipstream.monitoring.exceptions import MonitoringError
from slipstream.monitoring.transactional import TXN_TIMEOUT_S, Emitted, EndAware, Handler, ProcessorStats
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.dead_letter import RawMessage
from slipstream.schemas.exceptions import DecodeError
from slipstream.schemas.transport import TopicAdmin
from slipstream.schemas.transport.connection import KafkaLike
from slipstream.schemas.transport.consumer import ConsumedEvent, normalize_headers
from slipstream.streams.engine.faust_patches import FaustHooks, faust_app, topic_partition
from slipstream.streams.engine.restore import ChangelogRestore
from slipstream.streams.engine.settings import EngineSettings


class FaustProcessor(FaustHooks):
    """Runs a :class:`Handler` over ``inputs`` (logical names) as member of ``group_id`` in a Faust app, exactly once;
    the arguments and :meth:`run` as :class:`~slipstream.monitoring.transactional.TransactionalProcessor`'s."""

    def __init__(
        self,
        bootstrap_servers: KafkaLike,
        contracts: Contracts,
        *,
        group_id: str,
        inputs: Sequence[str],
        handler: Handler,
        transactional_id: str,
        changelog: str | None = None,
        processor_name: str = "processor",
        max_batch: int = 2000,
        poll_s: float = 0.05,
        tick_s: float = 1.0,
        fetch_wait_ms: int = 50,
        fetch_min_bytes: int = 32 * 1024,
        fields: Mapping[str, Collection[str]] | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        if config:
            msg = f"{processor_name}: {dict(config)!r} are librdkafka settings; the faust runtime takes none"
            raise MonitoringError(msg)
        if max_batch < 1:
            msg = f"max_batch must be >= 1, got {max_batch}"
            raise MonitoringError(msg)
        self.contracts = contracts
        self.handler = handler
        self.processor_name = processor_name
        self.group = group_id
        self.transactional_id = transactional_id
        self.tick_s = tick_s
        self.poll_s = poll_s
        self.stats = ProcessorStats()
        # the engine's app settings: its consumer settings (and any client setting added there) apply here too
        self.settings = EngineSettings(
            bootstrap_servers,
            redis_url="",  # no Redis in a monitoring processor
            batch_size=max_batch,
            poll_timeout_s=poll_s,
            fetch_min_bytes=fetch_min_bytes,
            fetch_wait_max_ms=fetch_wait_ms,
            worker_id=transactional_id,  # static membership: group.instance.id "<group>-worker-<transactional id>"
            runtime="faust",
        )
        self._logical = {contracts.topic(t): contracts.spec(t).name for t in inputs}
        projected = fields or {}
        self._decoders: dict[str, Callable[[bytes | None], dict[str, Any]]] = {
            full: contracts.serde(t).projection(projected[t]) if t in projected else contracts.serde(t).decode
            for full, t in self._logical.items()
        }
        self._changelog = contracts.topic(changelog) if changelog is not None else None
        existing = TopicAdmin(bootstrap_servers).existing()
        counts = {}
        for topic in [*self._logical, *([self._changelog] if self._changelog else [])]:
            if topic not in existing:
                msg = f"topic {topic!r} does not exist on the broker (run `slipstream topics apply`)"
                raise MonitoringError(msg)
            counts[topic] = existing[topic]
        if len(set(counts.values())) > 1:
            msg = f"inputs and changelog must have the same number of partitions (co-partitioned), got {counts}"
            raise MonitoringError(msg)
        self.n_partitions = next(iter(counts.values()))
        self.encoder = BatchEncoder(contracts, existing, self._changelog, processor_name)
        self._io_thread = ThreadPoolExecutor(1, thread_name_prefix=f"faust-{processor_name}")
        self._restore = ChangelogRestore(bootstrap_servers, self._changelog) if self._changelog else None
        self._restored: dict[int, dict[bytes, bytes]] = {}
        self.restoring: set[Any] = set()  # TPs the patched consumer keeps paused until their state is back
        self._owned: set[int] = set()
        self._next: dict[tuple[str, int], int] = {}  # (topic, partition) -> next offset to process
        self._returned: dict[tuple[str, int], int] = {}  # (topic, partition) -> last offset aiokafka handed on
        self._lock: asyncio.Lock | None = None  # one batch, tick or hand-over at a time (made on the app's loop)
        self._producer: AIOKafkaProducer | None = None
        self._next_tick = 0.0
        self._last_step = 0.0
        self._last_input = time.monotonic()
        self._assigned_at = 0.0
        self._failure: BaseException | None = None
        self._stop = threading.Event()
        self._until_idle_s: float | None = None
        self.app: Any = None

    # ------------------------------------------------------------------ lifecycle
    def run(self, stop: threading.Event, *, until_idle_s: float | None = None) -> ProcessorStats:
        """Process until ``stop`` is set (or, with ``until_idle_s``, until nothing arrived for that long)."""
        self._stop, self._until_idle_s = stop, until_idle_s
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()
        if self._failure is not None:
            raise self._failure
        return self.stats

    async def _main(self) -> None:
        app = self.make_app()
        await self._start_producer()
        try:
            await app.start()
            while not self._stop_now():
                await asyncio.sleep(0.05)
                await self._housekeeping()
        finally:
            try:
                await app.stop()  # hands every partition over first (waits for the transaction in flight)
            finally:
                if self._producer is not None:
                    await self._producer.stop()

    def make_app(self) -> Any:
        self.app = faust_app(
            self, self.settings, self.group, list(self._logical), tempfile.mkdtemp(prefix="faust-monitoring-")
        )
        thread = self.app.consumer._thread  # the consumer thread (aiokafka runs in its own loop there)
        fetch = thread._fetch_records
        returned = self._returned

        async def fetch_records(consumer: Any, *args: Any, **kwargs: Any) -> Any:
            """aiokafka's records as it hands them to Faust, noted in the same step of the thread's loop as its
            position moves past them (nothing runs between), for :meth:`_ends`."""
            records = await fetch(consumer, *args, **kwargs)
            for tp, messages in records.items():
                if messages:
                    returned[(tp.topic, tp.partition)] = messages[-1].offset
            return records

        thread._fetch_records = fetch_records
        return self.app

    async def _start_producer(self) -> None:
        """The transactional producer, with the app's broker and credentials; its id initialised before the group is
        joined, so a predecessor's open transaction is aborted before the changelog is read back."""
        self._lock = asyncio.Lock()
        faust_producer = self.app.producer
        settings = {**faust_producer._settings_default(), **faust_producer._settings_auth()}
        settings.pop("partitioner", None)
        settings |= {"acks": "all", "linger_ms": 20, "compression_type": "lz4"}
        producer = AIOKafkaProducer(
            **settings,
            enable_idempotence=True,
            transactional_id=self.transactional_id,
            transaction_timeout_ms=int(TXN_TIMEOUT_S * 2000),
        )
        try:
            await producer.start()
            await producer.begin_transaction()  # waits for the producer id: the previous epoch is fenced
            await producer.abort_transaction()
        except Exception as exc:
            await producer.stop()
            msg = f"{self.processor_name}: cannot start its transactions ({self.transactional_id!r}): {exc}"
            raise MonitoringError(msg) from exc
        self._producer = producer

    def close(self) -> None:
        if self._restore is not None:
            self._restore.close()
        self._io_thread.shutdown(wait=True)

    def _stop_now(self) -> bool:
        if self._stop.is_set() or self._failure is not None:
            return True
        if self._until_idle_s is None or not self._owned or self.restoring:
            return False
        return time.monotonic() - max(self._last_input, self._assigned_at) >= self._until_idle_s

    async def _io(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._io_thread, fn, *args)

    async def _housekeeping(self) -> None:
        """Restore slices; an empty step (ends, tick) every ``poll_s`` when no batch ran."""
        if self._restore is not None and self._restore.partitions:
            await self._restore_step()
        if self._owned and time.monotonic() - self._last_step >= self.poll_s:
            await self._step([])

    # ------------------------------------------------------------------ Faust's calls (FaustHooks)
    async def on_batch(self, events: list[Any]) -> None:
        if events:
            self._last_input = time.monotonic()
        # shielded: Faust cancelling its agent (a stop) never tears a transaction; the step ends, then the hand-over
        await asyncio.shield(self._step([e.message for e in events]))

    async def _step(self, messages: list[Any]) -> None:
        if self._lock is None or self._failure is not None:
            return
        async with self._lock:
            try:
                await self._step_locked(messages)
            except Exception as exc:  # noqa: BLE001 - stops the run; nothing after it is committed
                self._failure = exc

    async def _step_locked(self, messages: list[Any]) -> None:
        self._last_step = time.monotonic()
        taken = []
        offsets: dict[tuple[str, int], int] = {}
        for m in messages:
            key = (m.topic, m.partition)
            # a partition not (yet) this member's, or a record already processed: its owner reads it from the
            # committed offset (Faust seeks there on assignment)
            if m.partition in self._owned and m.offset >= self._next.get(key, -1):
                taken.append(m)
                offsets[key] = m.offset + 1
        self._next.update(offsets)
        ends = await self._ends() if isinstance(self.handler, EndAware) else set()
        now = time.monotonic()
        tick = now >= self._next_tick
        if tick:
            self._next_tick = now + self.tick_s
        records, consumed, counts = await self._io(self._work, taken, ends, tick)
        if records or offsets:
            await self._transact(records, offsets)
        self.stats.consumed += consumed
        self.stats.produced += counts[0]
        self.stats.changelog_writes += counts[1]
        self.stats.dead_letters += counts[2]

    def _work(
        self, messages: list[Any], ends: set[tuple[str, int]], tick: bool
    ) -> tuple[list[Out], int, tuple[int, int, int]]:
        """On the I/O thread: decode, process, ends, tick, encode."""
        events: list[ConsumedEvent] = []
        dead: list[tuple[RawMessage, str, str]] = []
        for m in messages:
            decoded = self._decode(m, dead)
            if decoded is not None:
                events.append(decoded)
        emitted = self.handler.process(events) if events else Emitted()
        if isinstance(self.handler, EndAware):
            emitted.extend(self.handler.at_end(ends))
        if tick:
            emitted.extend(self.handler.tick(time.time()))
        counts = (len(emitted.records), len(emitted.changelog), len(dead))
        return self.encoder.encode(emitted, dead), len(events), counts

    def _decode(self, m: Any, dead: list[tuple[RawMessage, str, str]]) -> ConsumedEvent | None:
        ts = round(m.timestamp * 1000) if m.timestamp is not None else None
        try:
            value = self._decoders[m.topic](m.value)
        except DecodeError as exc:
            raw = RawMessage(m.topic, m.partition, m.offset, ts, m.key, m.value, normalize_headers(m.headers))
            dead.append((raw, exc.error_type, str(exc)))
            return None
        return ConsumedEvent(m.topic, m.partition, m.offset, ts, m.key, value)

    async def _ends(self) -> set[tuple[str, int]]:
        """Owned input partitions read to the end the consumer last saw (its last stable offset): every record
        aiokafka handed to Faust is processed, and its position (past the transaction markers) is at or past the end.
        Read in the consumer thread (a step of its loop: never halfway through handing records over). Faust's own read
        offset is no help: a seek sets it to the offset sought, as if that record were read."""
        if not self._owned:
            return set()
        wanted = [(full, logical, p) for full, logical in self._logical.items() for p in sorted(self._owned)]
        processed = dict(self._next)

        async def probe() -> set[tuple[str, int]]:
            ends: set[tuple[str, int]] = set()
            for full, logical, p in wanted:
                handed = self._returned.get((full, p))
                if handed is not None and handed >= processed.get((full, p), 0):
                    continue  # handed to Faust, not processed yet
                position, lso = fetch_state(self.app, topic_partition(full, p))
                if position is not None and lso is not None and position >= lso:
                    ends.add((logical, p))
            return ends

        result: set[tuple[str, int]] = await self.app.consumer._thread.call_thread(probe)
        return result

    async def _transact(self, records: list[Out], offsets: Mapping[tuple[str, int], int]) -> None:
        if self._producer is None:
            msg = f"{self.processor_name}: no transactional producer (the app is not started)"
            raise MonitoringError(msg)
        await commit_batch(
            self._producer, self.app.consumer, self.group, self.processor_name, records, offsets, self.stats
        )

    async def hand_over(self, revoked: set[Any], *, stopping: bool = False) -> None:
        """Before Faust's revoke (and before it stops the consumer): the transaction in flight ends, then the
        handler forgets the partitions (their state is in the changelog, committed with their offsets)."""
        gone = {tp.partition for tp in revoked}
        if self._lock is None:
            return
        async with self._lock:
            had = sorted(gone & self._owned)
            self._owned -= gone
            for key in [k for k in self._next if k[1] in gone]:
                del self._next[key]
            for key in [k for k in self._returned if k[1] in gone]:
                del self._returned[key]
            self.restoring = {tp for tp in self.restoring if tp.partition not in gone}
            if self._restore is not None:
                await self._io(self._restore.cancel, gone)
            for p in gone:
                self._restored.pop(p, None)
            for p in had:
                await self._io(self.handler.revoke, p)
            self.stats.partitions = tuple(sorted(self._owned))

    async def on_assigned(self, assigned: set[Any]) -> None:
        """After the rebalance, before Faust resumes: new partitions stay paused until their state is restored."""
        self.stats.rebalances += 1
        numbers = {tp.partition for tp in assigned if tp.topic in self._logical} - self._owned
        if not numbers:
            return
        self.restoring |= {tp for tp in assigned if tp.topic in self._logical and tp.partition in numbers}
        if self._restore is None:
            await self._adopt(numbers)
            return
        for p in numbers:
            self._restored[p] = {}
        await self._io(self._restore.start, numbers)
        await self._restore_step()

    def _apply(self, partition: int, key: bytes, value: bytes | None) -> None:
        state = self._restored.get(partition)
        if state is None or not key:
            return
        if value is None:
            state.pop(key, None)
        else:
            state[key] = value

    async def _restore_step(self) -> None:
        if self._restore is None:
            return
        done: set[int] = await self._io(self._restore.step, self._apply)
        if done:
            await self._adopt(done)

    async def _adopt(self, numbers: set[int]) -> None:
        """Partitions whose state is back: the handler takes them, their inputs resume."""
        for p in sorted(numbers):
            restored = self._restored.pop(p, {})
            self.stats.restored += len(restored)
            await self._io(self.handler.assign, p, restored)
        self._owned |= numbers
        self.stats.partitions = tuple(sorted(self._owned))
        resumed = {tp for tp in self.restoring if tp.partition in numbers}
        self.restoring -= resumed
        if resumed:
            self.app.consumer.resume_partitions(resumed)
        self._assigned_at = time.monotonic()


__all__ = ["FaustProcessor"]
