"""The I/O protocol of one stage, the same for every runtime: decode → dead letters → outputs → flush → commit.

A runtime (:mod:`.runner` on confluent-kafka, :mod:`.faust_runtime` on Faust) owns the group membership, polls,
rebalances and the commit call itself; it hands each consumed message of a partition it owns to :meth:`StageIO.ingest`,
calls :meth:`StageIO.drain` and sends what is due, and commits no further than :meth:`StageIO.plan_commit` says (it
flushes first): never past an event whose output is still waiting for a watermark. A crash anywhere replays the
uncommitted tail on restart: duplicates change no state (ids are in the rings), outputs are idempotent (the online
store keeps the newest row per entity; the feature log's last record per event wins).

Nothing is lost silently: undecodable input (direct or internal), late events and online-store rows Redis refuses go
to the dead-letter topic with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from slipstream.features.exceptions import LayoutError
from slipstream.features.feast_repo import view_layouts
from slipstream.features.online_store import EntityStateBlob, RedisFeatureWriter, WriteReport
from slipstream.features.windows import EntityState
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.dead_letter import RawMessage
from slipstream.schemas.exceptions import DecodeError
from slipstream.schemas.serde import timestamp_fields
from slipstream.schemas.transport.consumer import normalize_headers
from slipstream.streams.engine.base import InputMessage, StageOutputs
from slipstream.streams.engine.exceptions import InternalMessageError
from slipstream.streams.engine.internal import decode_internal, encode_internal, watermark_source
from slipstream.streams.engine.processor import PendingEvent, StageOutput, StageProcessor
from slipstream.streams.engine.settings import EngineSettings, StageStats
from slipstream.streams.engine.topology import StageSpec, Topology, check_fields

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - EPOCH
_EMPTY_STATE = EntityState().to_bytes()

Ref = tuple[str, int, int]  # (topic, partition, offset) of a consumed message


def _micros(value: datetime) -> int:
    return (value - EPOCH) // _ONE_US


def engine_group(prefix: str, feature_set: str, stage: str) -> str:
    """The consumer group of one stage: every worker of the stage, on any host, joins it (either runtime)."""
    return f"{prefix}slipstream-engine-{feature_set}-{stage}"


@dataclass(frozen=True, slots=True)
class CommitPlan:
    """How far each (topic, partition) may be committed."""

    offsets: dict[tuple[str, int], int]

    def covered(self, committed: Mapping[tuple[str, int], int]) -> tuple[set[int], set[int]]:
        """Given offsets the broker has committed, ``(covered, short)``: the partitions every input of which is
        committed at least as far as planned, and those with an input that is not (offsets only grow, so a later
        commit covers an earlier plan whose own commit failed)."""
        short = {p for (t, p), at in self.offsets.items() if committed.get((t, p), -1) < at}
        return {p for _, p in self.offsets} - short, short


class StageIO:
    """One stage's processor between a runtime's messages and its outputs. Not thread-safe: one per worker."""

    def __init__(
        self,
        settings: EngineSettings,
        contracts: Contracts,
        topology: Topology,
        stage: StageSpec,
        outputs: StageOutputs,
    ) -> None:
        self.contracts = contracts
        self.topology = topology
        self.stage = stage
        self.outputs = outputs
        self.stats = StageStats()
        self.processor = StageProcessor(topology, stage, lateness_us=int(settings.lateness_s * 1_000_000))
        self.inputs = {contracts.topic(t): contracts.spec(t).name for t in stage.inputs}  # full -> logical
        self.changelog = contracts.topic(stage.changelog_topic)
        self.forward_topic = contracts.topic(stage.forward_topic) if stage.forward_topic else None
        self.name = f"engine-{topology.feature_set.name}-{stage.name}"
        # The last marker sent may have said some input is read to its end. True at start: a worker before this one
        # (a crash, a hand-over) may have said so, and the next stage holds it until a marker says otherwise.
        self._idle_claimed = True
        self._layouts = view_layouts([topology.feature_set], settings.project)
        self._writer = RedisFeatureWriter.from_url(settings.redis_url, self._layouts.values())  # Redis or a cluster
        self._join_keys = {view.name: view.entity.join_keys for view in stage.views}
        self._ts_fields = {
            logical: timestamp_fields(contracts.serde(logical).schema.raw)
            for logical in self.inputs.values()
            if contracts.spec(logical).value_schema
        }

    @staticmethod
    def check(contracts: Contracts, topology: Topology, stage: StageSpec) -> None:
        """Refuse a topology whose inputs lack a field it reads: before any client exists, so nothing leaks."""
        for logical in (contracts.spec(t).name for t in stage.inputs):
            if contracts.spec(logical).value_schema:
                fields = (f["name"] for f in contracts.serde(logical).schema.raw["fields"])
                check_fields(topology, logical, fields)

    # ------------------------------------------------------------------ in
    def ingest(self, msg: InputMessage) -> None:
        """One message of a partition this worker owns: decoded and applied, or dead-lettered with the reason."""
        topic, partition, offset = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
        self.stats.consumed += 1
        ref: Ref = (topic, partition, offset)
        if not self.stage.direct:
            self._internal(msg, partition, ref)
            return
        logical = self.inputs[topic]
        try:
            record = self.contracts.serde(logical).decode(msg.value())
        except DecodeError as exc:
            self.dead_letter(msg, exc.error_type, str(exc))
            return
        for name in self._ts_fields.get(logical, ()):
            value = record.get(name)
            if isinstance(value, datetime):
                record[name] = _micros(value)
        self.processor.on_event(partition, logical, record, ref=(msg, ref), position=(topic, offset))

    def _internal(self, msg: InputMessage, partition: int, ref: Ref) -> None:
        try:
            payload = decode_internal(msg.value() or b"")
        except InternalMessageError as exc:
            self.dead_letter(msg, "undecodable", str(exc))
            return
        problem = self.processor.internal_problem(payload)
        if problem is not None:
            self.dead_letter(msg, "schema_mismatch", problem)
            return
        if "wms" in payload:
            own_floors = "fl" in payload
            for source, upstream, wm in payload["wms"]:
                self.processor.on_marker(partition, source, upstream, payload["n"], wm, floor=not own_floors)
            for source, upstream, time_us in payload.get("fl", ()):
                self.processor.on_floor(partition, source, upstream, time_us)
            return
        self.processor.on_event(
            partition,
            payload["src"],
            payload["rec"],
            ref=ref,
            carried=payload["feat"],
            newest_us=payload["nt"],
            position=(ref[0], ref[2]),
        )

    def restore(self, partition: int, key: bytes, value: bytes | None) -> None:
        self.processor.restore(partition, key, value)
        if watermark_source(key) is None:  # entity states only, not a first stage's watermark checkpoints
            self.stats.restored_keys += 1

    # ------------------------------------------------------------------ out
    def drain(self, now: datetime) -> StageOutput:
        """Compute what is due and send it: forwards, feature log, changelog, online store, dead letters."""
        out = self.processor.drain(now)
        self.send(out)
        return out

    def send(self, out: StageOutput) -> None:
        if self.forward_topic:
            for key, value in out.forwards:
                self.outputs.forward(self.forward_topic, key, value)
        for vector in out.vectors:
            self.outputs.event("feature-log", vector)
        self.stats.vectors += len(out.vectors)
        for (msg, _ref), reason in out.late:
            self.dead_letter(msg, "late_event", reason)
        states = []
        for (partition, key, value), (view, key_values) in zip(out.changelog, out.states, strict=True):
            self.outputs.changelog(self.changelog, key, value, partition)
            states.append(EntityStateBlob(view, dict(zip(self._join_keys[view], key_values, strict=True)), value))
        for partition, key, view, key_values in out.evicted:
            # A tombstone: compaction drops the entity, a restore never reads it again. In Redis the blob becomes
            # the empty state: every event it held is outside every window a scorer can still compute (the rule
            # in eviction.py), so the scorer's features are the same, and the hash keeps only Feast's row.
            self.outputs.changelog(self.changelog, key, None, partition)
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
        is left out: the rows of that entity are refused too, and :meth:`send` dead-letters their events."""
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
        if ref is not None and len(ref) == 2:  # (message, ref): the original message of a direct stage
            self.dead_letter(ref[0], "invalid_value", why)
            return
        topic, partition, offset = ref if ref is not None else (next(iter(self.inputs)), -1, -1)
        payload = {"src": item.topic, "rec": item.record, "feat": item.carried, "nt": item.newest_us}
        key = str(item.record.get(self.stage.partition_key, "")).encode()
        raw = RawMessage(topic, partition, offset, None, key, encode_internal(payload))
        self.dead_letter(raw, "invalid_value", why)

    def dead_letter(self, msg: InputMessage | RawMessage, error_type: str, reason: str) -> None:
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
        self.outputs.dead_letter(raw, error_type=error_type, reason=reason, processor=self.name)
        self.stats.dead_lettered += 1

    def send_markers(self, held: Mapping[tuple[str, int], bool], upstream_n: int, partitions: int) -> None:
        """Broadcast the watermarks and floors of the (logical topic, partition) inputs ``held`` to every one of the
        next stage's ``partitions``; ``held[...]``: read to its end (then the marker may say "idle")."""
        payload = self.marker_payload(held, upstream_n)
        for p in range(partitions):
            self.outputs.forward(self.forward_topic or "", b"", payload, p)
        self._idle_claimed = any(held.values())

    def took_over(self) -> None:
        """Partitions became this worker's: their previous owner may have said they were read to their end, so the
        next batch retracts it first (:meth:`retract_idle`)."""
        self._idle_claimed = True

    def hand_over(self, gone: Iterable[int], upstream_n: int, partitions: int) -> None:
        """Before input partitions ``gone`` go to another worker: say they are not idle, so the next stage waits for
        their new owner's markers rather than holding this worker's last "idle" while the new owner catches up."""
        self._not_idle(gone, upstream_n, partitions)
        self._idle_claimed = True  # the partitions this worker keeps may still be marked idle

    def retract_idle(self, owned: Iterable[int], upstream_n: int, partitions: int) -> None:
        """Call after ingesting a batch, before draining it: if the last marker said some input was read to its end,
        say now that none is, before any event of the batch is sent on. A transaction can arrive here before a label
        written ahead of it (another partition); the next stage must not compute its features while that label's
        partition is still marked idle. The next check of the ends claims idle again when it is true."""
        if self._idle_claimed:
            self._not_idle(owned, upstream_n, partitions)

    def _not_idle(self, input_partitions: Iterable[int], upstream_n: int, partitions: int) -> None:
        held = [(logical, p) for logical in self.inputs.values() for p in input_partitions]
        self.send_markers(dict.fromkeys(held, False), upstream_n, partitions)

    def marker_payload(self, held: Mapping[tuple[str, int], bool], upstream_n: int) -> bytes:
        """The watermarks and floors this worker's partitions guarantee, for every partition of the next stage."""
        marks = [[source, upstream, wm] for source, upstream, wm in self.processor.markers(held, upstream_n)]
        floors = [[source, upstream, time_us] for source, upstream, time_us in self.processor.floors(held)]
        return encode_internal({"wms": marks, "n": upstream_n, "fl": floors})

    def flush(self, timeout_s: float) -> None:
        """Every output is on the broker, or :class:`~slipstream.streams.engine.exceptions.StateError`."""
        self.outputs.flush(timeout_s)

    # ------------------------------------------------------------------ commit
    def plan_commit(self, next_offsets: Mapping[tuple[str, int], int], flush_s: float) -> CommitPlan:
        """How far each consumed (topic, partition) may be committed: its next offset, or the oldest event of it whose
        output is still waiting. Writes the watermark checkpoints of the plan to the changelog (a direct stage's; see
        :mod:`~slipstream.streams.engine.partition_watermarks`) and flushes every output, so that whatever the commit
        covers is on the broker before it. Once the broker has acknowledged the commit, :meth:`committed` with the
        plan."""
        offsets: dict[tuple[str, int], int] = {}
        for (topic, partition), nxt in next_offsets.items():
            waiting = [ref_offset(r) for r in self.processor.pending_refs(partition) if ref_topic(r) == topic]
            offsets[(topic, partition)] = min([nxt, *waiting])
        for partition, key, value in self.processor.checkpoint(offsets):
            self.outputs.changelog(self.changelog, key, value, partition)
        self.flush(flush_s)
        return CommitPlan(offsets)

    def committed(self, plan: CommitPlan, partitions: Iterable[int] | None = None) -> None:
        """The broker acknowledged the plan's commit (of ``partitions`` only, when given): what lies before it will not
        be read again, so state no longer needs to be kept for replaying it. Never call it for a commit that failed."""
        done = None if partitions is None else set(partitions)
        self.processor.committed_offsets({k: at for k, at in plan.offsets.items() if done is None or k[1] in done})

    def forget(self, partitions: Iterable[int]) -> None:
        self.processor.forget(set(partitions))


def _inner(ref: Any) -> Ref:
    return ref[1] if len(ref) == 2 else ref  # type: ignore[no-any-return]


def ref_topic(ref: Any) -> str:
    return str(_inner(ref)[0])


def ref_offset(ref: Any) -> int:
    return int(_inner(ref)[2])


__all__ = ["CommitPlan", "StageIO", "engine_group"]
