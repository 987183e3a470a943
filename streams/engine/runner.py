"""The engine's I/O loop for one stage: Kafka in, Redis + Kafka out, state in a compacted changelog.

Per batch: decode (undecodable or invalid events -> dead-letter, with the original bytes and the reason), apply,
compute what is due, then send outputs and state changes, write the online store, flush, and only then commit the
consumed offsets (never past an event whose output is still waiting for a watermark). A crash anywhere replays the
uncommitted tail on restart: duplicates change no state (ids are in the rings), outputs are idempotent (the online
store keeps the newest row per entity; the feature log's last record per event wins). At-least-once delivery,
effectively-once state.

State: on assignment, every owned partition's state is rebuilt from the changelog partition of the same number,
outside the rebalance callback and a slice per step, its input paused meanwhile (:mod:`.restore`). Entities that no
output to come can reach are evicted: a tombstone to the changelog, an empty state blob to Redis (:mod:`.eviction`).
Nothing is lost silently: undecodable input (direct or internal) and online-store rows Redis refuses go to the
dead-letter topic with the reason.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from slipstream.features.exceptions import LayoutError
from slipstream.features.feast_repo import view_layouts
from slipstream.features.online_store import EntityStateBlob, RedisFeatureWriter, WriteReport
from slipstream.features.windows import EntityState
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.dead_letter import RawMessage
from slipstream.schemas.exceptions import DecodeError
from slipstream.schemas.serde import timestamp_fields
from slipstream.schemas.topics import TopicCatalog
from slipstream.schemas.transport import EventProducer, TopicAdmin
from slipstream.schemas.transport.consumer import normalize_headers
from slipstream.streams.engine.exceptions import InternalMessageError, StateError
from slipstream.streams.engine.processor import (
    PendingEvent,
    StageOutput,
    StageProcessor,
    decode_internal,
    encode_internal,
)
from slipstream.streams.engine.restore import ChangelogRestore
from slipstream.streams.engine.settings import COLOCATED_NICE, EngineSettings, ReportGate, StageStats
from slipstream.streams.engine.topology import StageSpec, Topology, check_fields

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - EPOCH

log = logging.getLogger(__name__)


def _micros(value: datetime) -> int:
    return (value - EPOCH) // _ONE_US


def engine_group(prefix: str, feature_set: str, stage: str) -> str:
    """The consumer group of one stage: every worker of the stage, on any host, joins it."""
    return f"{prefix}slipstream-engine-{feature_set}-{stage}"


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
    ) -> None:
        self.settings = settings
        contracts = contracts.with_topics(topology.topics())  # the set's repartitions and changelogs, derived
        self.contracts = contracts
        self.topology = topology
        self.stage = stage
        self.stats = StageStats()
        self._on_batch = on_batch
        self.processor = StageProcessor(topology, stage, lateness_us=int(settings.lateness_s * 1_000_000))
        prefix = contracts.catalog.prefix
        self._inputs = {contracts.topic(t): contracts.spec(t).name for t in stage.inputs}
        self._changelog = contracts.topic(stage.changelog_topic)
        self._forward = contracts.topic(stage.forward_topic) if stage.forward_topic else None
        for logical in self._inputs.values():  # before any client exists: a refused topology leaks nothing
            if contracts.spec(logical).value_schema:
                fields = (f["name"] for f in contracts.serde(logical).schema.raw["fields"])
                check_fields(topology, logical, fields)
        group = engine_group(prefix, topology.feature_set.name, stage.name)
        config: dict[str, Any] = {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "range",  # same partition numbers of every input, co-partitioned
            "session.timeout.ms": settings.session_timeout_ms,
            "fetch.wait.max.ms": settings.fetch_wait_max_ms,
            "fetch.min.bytes": settings.fetch_min_bytes,
            "socket.nagle.disable": True,  # no Nagle delay on small, latency-bound requests
            "queued.max.messages.kbytes": 65536,
        }
        if settings.worker_id is not None:
            config["group.instance.id"] = f"{group}-worker-{settings.worker_id}"
        self._consumer = Consumer(config)
        self._failed_deliveries: list[str] = []
        self._producer = _raw_producer(settings.bootstrap_servers, settings.linger_ms, self._on_delivery_error)
        self._bulk = _raw_producer(settings.bootstrap_servers, settings.bulk_linger_ms, self._on_delivery_error)
        self._events = EventProducer(settings.bootstrap_servers, contracts, linger_ms=settings.bulk_linger_ms)
        layouts = view_layouts([topology.feature_set], settings.project).values()
        self._writer = RedisFeatureWriter.from_url(settings.redis_url, layouts)  # one Redis or a Redis Cluster
        self._join_keys = {view.name: view.entity.join_keys for view in stage.views}
        self._layouts = view_layouts([topology.feature_set], settings.project)
        self._ts_fields = {
            logical: timestamp_fields(contracts.serde(logical).schema.raw)
            for logical in self._inputs.values()
            if contracts.spec(logical).value_schema
        }
        self._owned: set[int] = set()
        self._restoring = ChangelogRestore(
            settings.bootstrap_servers, self._changelog, slice_s=settings.restore_slice_s
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
        self._announced = False
        self._reports = ReportGate(settings.report_interval_s)
        self._reported_data = False

    # ------------------------------------------------------------------ lifecycle
    def run(self, stop: threading.Event, *, until_idle_s: float | None = None) -> StageStats:
        """Process until ``stop`` is set (or, with ``until_idle_s``, until nothing arrived for that long)."""
        # Entity state is many small lists: the cyclic GC's full passes over them are the engine's longest pauses.
        # State holds no reference cycles, so collect rarely; freeze what exists at start-up.
        gc.collect()
        gc.freeze()
        gc.set_threshold(200_000, 50, 1000)
        failed = True
        try:
            internal = TopicCatalog(self.contracts.catalog.prefix, self.topology.topics())
            TopicAdmin(self.settings.bootstrap_servers).apply(internal)  # idempotent; concurrent stages agree
            self._consumer.subscribe(
                list(self._inputs), on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
            )
            first = next(iter(self._inputs))
            self._input_partitions = len(self._producer.list_topics(first, timeout=10).topics[first].partitions)
            if self._forward:
                md = self._producer.list_topics(self._forward, timeout=10).topics[self._forward]
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
                self._flush(10)
                self._commit(wait=True)
        finally:
            # Leaving the group revokes every partition: what was done is committed above, and after a failure
            # nothing may be, so the revoke hands nothing over. Each client is closed whatever the others do.
            self._hand_over = False
            try:
                self._restoring.close()
                self._consumer.close()
            finally:
                for producer in (self._producer, self._bulk):  # after a failure, what was not sent is read again
                    producer.purge()
                    producer.flush(0)
                    producer.close()
                self._events.close(timeout=0)

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
        done = self._restoring.step(self._restore_record)
        if self._restoring.records != before:
            self.stats.last_batch_at = time.monotonic()
        if not done:
            return
        self._owned |= done
        resumed = [TopicPartition(topic, p) for topic in self._inputs for p in done]
        for tp in resumed:  # a message fetched before the pause took effect was dropped: read it again
            first = self._rewind.pop((tp.topic, tp.partition), None)
            if first is not None:
                self._consumer.seek(TopicPartition(tp.topic, tp.partition, first))
        self._consumer.resume(resumed)

    def _restore_record(self, partition: int, key: bytes, value: bytes | None) -> None:
        self.processor.restore(partition, key, value)
        self.stats.restored_keys += 1

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
            self._flush(30)
            self._commit(wait=True)
        self._drop(gone)

    def _drop(self, gone: set[int]) -> None:
        self._restoring.cancel(gone)
        self.processor.forget(gone)
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
            self.stats.last_batch_at = time.monotonic()
        out = self.processor.drain(datetime.now(UTC))
        self._send(out)
        if self.stage.direct and self._forward:
            self._send_markers(got)
        for producer in (self._producer, self._bulk, self._events):
            producer.poll(0)
        now = time.monotonic()
        if now - self._last_commit >= self.settings.commit_interval_s:
            # Outputs first, offsets after: a crash between the two replays the tail (idempotent), loses nothing.
            self._flush(30)
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
        logical = self._inputs[topic]
        self._caught_up[(logical, partition)] = False  # data arrived since the last check: not idle until checked
        self.stats.consumed += 1
        ref = (topic, partition, offset)
        if not self.stage.direct:
            try:
                payload = decode_internal(msg.value() or b"")
            except InternalMessageError as exc:
                self._dead_letter(msg, "undecodable", str(exc))
                return
            problem = self.processor.internal_problem(payload)
            if problem is not None:
                self._dead_letter(msg, "schema_mismatch", problem)
                return
            if "wms" in payload:
                for source, upstream, wm in payload["wms"]:
                    self.processor.on_marker(partition, source, upstream, payload["n"], wm)
                for source, upstream, time_us in payload.get("fl", ()):
                    self.processor.on_floor(partition, source, upstream, time_us)
                return
            self.processor.on_event(
                partition, payload["src"], payload["rec"], ref=ref, carried=payload["feat"], newest_us=payload["nt"]
            )
            return
        try:
            record = self.contracts.serde(logical).decode(msg.value())
        except DecodeError as exc:
            self._dead_letter(msg, exc.error_type, str(exc))
            return
        for name in self._ts_fields.get(logical, ()):
            value = record.get(name)
            if isinstance(value, datetime):
                record[name] = _micros(value)
        self.processor.on_event(partition, logical, record, ref=(msg, ref))

    def _dead_letter(self, msg: Message | RawMessage, error_type: str, reason: str) -> None:
        if isinstance(msg, RawMessage):
            raw = msg
        else:
            ts_type, ts = msg.timestamp()
            raw = RawMessage(
                msg.topic() or "",
                msg.partition() or 0,
                msg.offset() or 0,
                ts if ts_type else None,
                msg.key(),
                msg.value(),
                normalize_headers(msg.headers()),
            )
        self._events.dead_letter(
            raw,
            error_type=error_type,
            reason=reason,
            processor=f"engine-{self.topology.feature_set.name}-{self.stage.name}",
        )
        self.stats.dead_lettered += 1

    def _send(self, out: StageOutput) -> None:
        if self._forward:
            for key, value in out.forwards:
                self._produce(self._forward, value, key)
        for vector in out.vectors:
            self._events.send("feature-log", vector)
        self.stats.vectors += len(out.vectors)
        for (msg, _ref), reason in out.late:
            self._dead_letter(msg, "late_event", reason)
        states = []
        for (partition, key, value), (view, key_values) in zip(out.changelog, out.states, strict=True):
            self._produce(self._changelog, value, key, partition, self._bulk)
            states.append(EntityStateBlob(view, dict(zip(self._join_keys[view], key_values, strict=True)), value))
        for partition, key, view, key_values in out.evicted:
            # A tombstone: compaction drops the entity, a restore never reads it again. In Redis the blob becomes
            # the empty state: every event it held is outside every window a scorer can still compute (the rule
            # in eviction.py), so the scorer's features are the same, and the hash keeps only Feast's row.
            self._produce(self._changelog, None, key, partition, self._bulk)
            join_keys = dict(zip(self._join_keys[view], key_values, strict=True))
            states.append(EntityStateBlob(view, join_keys, _EMPTY_STATE))
        self.stats.evicted += len(out.evicted)
        if out.rows or states:
            report = self._write(out, states)
            self.stats.rows_written += report.applied
            self.stats.rows_stale += report.stale
            for rejected in report.rejected:
                self._reject_row(out.row_items[rejected.index], rejected.row.view, rejected.reason)
        self.stats.applied += out.applied
        self.stats.duplicates += out.duplicates

    def _write(self, out: StageOutput, states: list[EntityStateBlob]) -> WriteReport:
        """Rows and state blobs in one batch. A blob whose key the layout refuses (a join key out of its type's range)
        is left out: the rows of that entity are refused too, and :meth:`_send` dead-letters their events."""
        try:
            return self._writer.write_batch(out.rows, states)
        except LayoutError:
            pass
        kept = []
        for blob in states:
            try:
                self._layouts[blob.view].key(blob.join_keys)
            except LayoutError:
                continue
            kept.append(blob)
        return self._writer.write_batch(out.rows, kept)

    def _reject_row(self, item: PendingEvent, view: str, reason: str) -> None:
        """Dead-letter the event whose online-store row Redis's layout refused, with why: the original message when
        it is at hand, else the event as this stage received it (an internal message; a recomputed late event)."""
        why = f"the online store refused the {view} row at {item.time_us} us: {reason}"
        self.stats.rows_rejected += 1
        ref = item.ref
        if ref is not None and isinstance(ref[0], Message):
            self._dead_letter(ref[0], "invalid_value", why)
            return
        topic, partition, offset = ref if ref is not None else (next(iter(self._inputs)), -1, -1)
        payload = {"src": item.topic, "rec": item.record, "feat": item.carried, "nt": item.newest_us}
        key = str(item.record.get(self.stage.partition_key, "")).encode()
        raw = RawMessage(topic, partition, offset, None, key, encode_internal(payload))
        self._dead_letter(raw, "invalid_value", why)

    def _produce(
        self,
        topic: str,
        value: bytes | None,
        key: bytes,
        partition: int | None = None,
        producer: Producer | None = None,
    ) -> None:
        producer = producer or self._producer
        while True:
            try:
                if partition is None:
                    producer.produce(topic, value, key)
                else:
                    producer.produce(topic, value, key, partition=partition)
                return
            except BufferError:
                producer.poll(0.05)

    def _flush(self, timeout_s: float) -> None:
        """Every output handed to a producer is on the broker (librdkafka's flush sends at once, linger or not);
        raises :class:`StateError` otherwise, before any offset is committed for them."""
        for producer in (self._producer, self._bulk):
            remaining = producer.flush(timeout_s)
            if remaining:
                msg = f"{remaining} output record(s) unacknowledged after {timeout_s:g} s (is the broker up?)"
                raise StateError(msg)
        if self._failed_deliveries:
            failures, self._failed_deliveries = self._failed_deliveries, []
            msg = f"{len(failures)} output record(s) failed delivery, first: {failures[0]}"
            raise StateError(msg)
        self._events.flush(timeout_s)  # raises ProduceError itself

    def _on_delivery_error(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:  # only failures are reported (delivery.report.only.error)
            self._failed_deliveries.append(f"{msg.topic()}[{msg.partition()}]: {err.str()}")

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
        n = self._input_partitions
        marks = [[source, upstream, wm] for source, upstream, wm in self.processor.markers(held, n)]
        floors = [[source, upstream, time_us] for source, upstream, time_us in self.processor.floors(held)]
        payload = encode_internal({"wms": marks, "n": n, "fl": floors})
        for p in range(self._forward_partitions):
            self._produce(self._forward, payload, b"", p)

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
                except KafkaException as exc:  # a slow broker (a loaded machine): not idle, asked again next time
                    log.warning("%s[%d]: cannot tell whether it is read to its end (%s); asking again", topic, p, exc)
                    self._caught_up[(logical, p)] = False
                    continue
                self._caught_up[(logical, p)] = position >= high

    def _commit(self, *, wait: bool = False) -> None:
        """Commit what is done; asynchronously on the hot path (outputs were flushed first), synchronously at close."""
        offsets = []
        behind: set[int] = set()  # partitions committed only up to an event still waiting for its output
        for (topic, partition), nxt in self._next_offsets.items():
            waiting = [r for r in self.processor.pending_refs(partition) if _ref_topic(r) == topic]
            commit_at = min([nxt, *(_ref_offset(r) for r in waiting)])
            if commit_at < nxt:
                behind.add(partition)
            offsets.append(TopicPartition(topic, partition, commit_at))
        if offsets and wait:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        elif offsets:
            self._consumer.commit(offsets=offsets, asynchronous=True)
        self.processor.committed({tp.partition for tp in offsets} - behind)


_EMPTY_STATE = EntityState().to_bytes()


def _raw_producer(bootstrap: str, linger_ms: float, on_error: Callable[[KafkaError | None, Message], None]) -> Producer:
    """Forwards and markers (``linger_ms`` 1) or changelogs (20); failed deliveries reach ``on_error``."""
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "on_delivery": on_error,
            "delivery.report.only.error": True,  # no Python callback per delivered record
            "enable.idempotence": True,
            "acks": "all",  # what idempotence implies, said: on 3 brokers a write is safe once 2 replicas hold it
            "linger.ms": linger_ms,
            "socket.nagle.disable": True,  # no Nagle delay on small, latency-bound requests
            "compression.type": "lz4",
            "partitioner": "murmur2_random",
            "queue.buffering.max.messages": 1_000_000,
        }
    )


def _ref_topic(ref: Any) -> str:
    inner = ref[1] if isinstance(ref[0], Message) else ref
    return str(inner[0])


def _ref_offset(ref: Any) -> int:
    inner = ref[1] if isinstance(ref[0], Message) else ref
    return int(inner[2])


__all__ = ["COLOCATED_NICE", "EngineSettings", "ReportGate", "StageRunner", "StageStats", "engine_group"]
