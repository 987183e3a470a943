"""``slipstream record``: a window of production, with what it takes to replay it, into one slice file.

Order of work: check every topic exists (before anything is written); per topic and partition find the window's
offsets; stream the window's records into the slice, noting each scored event's id and time; stream the history the
processors need (see :mod:`slipstream.replay.scope`), filtered by event time; collect the scorer's outputs of the
window's inputs, waiting ``settle_s`` for stragglers; copy ``model-events``, the serving model versions and every
schema a value was written with; write the manifest with counts and checksums last.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer

from slipstream.features.base import FeatureSet
from slipstream.models.registry import ModelRegistry
from slipstream.monitoring.figures import micros
from slipstream.replay.exceptions import ReplayError
from slipstream.replay.kafka_io import Span, offsets_at, partitions_of, raw_consumer, read_span, watermarks
from slipstream.replay.scope import Scope, scope_for, trigger_time_fields
from slipstream.replay.serving_timeline import serving_timeline
from slipstream.replay.slice_file import SliceRecord, SliceWriter
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.exceptions import DecodeError, SlipstreamError
from slipstream.schemas.serde import AvroSerde
from slipstream.schemas.transport import TopicAdmin
from slipstream.schemas.transport.connection import KafkaLike

MODEL_EVENTS = "model-events"
Progress = Callable[[str, int, int | None], None]  # (task, done, total)


def _quiet(_task: str, _done: int, _total: int | None) -> None:
    return None


@dataclass(frozen=True)
class RecordPlan:
    """What to record: logical ``topics`` over Kafka timestamps ``[start, end)``."""

    topics: tuple[str, ...]
    start: datetime
    end: datetime
    settle_s: float = 5.0  # wait this long for outputs of the window's last inputs
    history: bool = True
    models: bool = True

    def __post_init__(self) -> None:
        for name, value in (("--from", self.start), ("--to", self.end)):
            if value.tzinfo is None:
                msg = f"{name} {value.isoformat()!r} has no time zone"
                raise ReplayError(msg)
        if self.end <= self.start:
            msg = f"--to {self.end.isoformat()} is not after --from {self.start.isoformat()}"
            raise ReplayError(msg)
        if not self.topics:
            msg = "--topics is empty: name at least one topic"
            raise ReplayError(msg)


@dataclass
class _Seen:
    """What the window's records told about themselves."""

    ids: dict[str, set[str]] = field(default_factory=dict)  # per input topic of an output: the ids recorded
    first_us: dict[str, int] = field(default_factory=dict)  # per trigger topic: the first scored event's time
    fingerprints: set[bytes] = field(default_factory=set)
    undecodable: dict[str, int] = field(default_factory=dict)


class Recorder:
    def __init__(
        self,
        contracts: Contracts,
        bootstrap: KafkaLike,
        feature_sets: Mapping[str, FeatureSet],
        *,
        lateness_s: float,
        registry: ModelRegistry | None,
        settings_note: Mapping[str, Any],
        progress: Progress = _quiet,
    ) -> None:
        self.contracts = contracts
        self.bootstrap = bootstrap
        self.feature_sets = feature_sets
        self.lateness_s = lateness_s
        self.registry = registry
        self.settings_note = dict(settings_note)
        self.progress = progress

    def check(self, plan: RecordPlan) -> Scope:
        """Every asked topic is a contract topic that exists on the broker: one error naming the first that is not."""
        known = {spec.name for spec in self.contracts.catalog}
        for topic in plan.topics:
            if topic not in known or self.contracts.spec(topic).value_schema is None:
                msg = f"--topics: {topic!r} is not a contract topic (known: {', '.join(sorted(known))})"
                raise ReplayError(msg)
        scope = scope_for(plan.topics, self.feature_sets, self.lateness_s)
        consumer = raw_consumer(self.bootstrap)
        try:
            for topic in (*scope.topics, *(o.topic for o in scope.outputs), MODEL_EVENTS):
                partitions_of(consumer, self.contracts.topic(topic))
        finally:
            consumer.close()
        return scope

    def record(self, plan: RecordPlan, out: Path) -> dict[str, Any]:
        scope = self.check(plan)
        out.parent.mkdir(parents=True, exist_ok=True)
        writer = SliceWriter(out)
        consumer = raw_consumer(self.bootstrap)
        try:
            manifest = self._record(plan, scope, writer, consumer)
        except BaseException:
            writer.abort()
            raise
        finally:
            consumer.close()
        writer.close(manifest)
        return manifest

    # ------------------------------------------------------------------ the parts
    def _record(self, plan: RecordPlan, scope: Scope, writer: SliceWriter, consumer: Consumer) -> dict[str, Any]:
        start_ms, end_ms = _ms(plan.start), _ms(plan.end)
        triggers = trigger_time_fields(self.feature_sets, scope.sets)
        id_topics = {o.input_topic: o.input_id_field for o in scope.outputs}
        seen = _Seen()
        topics: dict[str, Any] = {}
        window_starts: dict[str, dict[int, int]] = {}
        for topic in scope.topics:
            full = self.contracts.topic(topic)
            parts = partitions_of(consumer, full)
            starts = offsets_at(consumer, full, parts, start_ms)
            ends = offsets_at(consumer, full, parts, end_ms)
            window_starts[topic] = starts
            spans = [Span(full, p, starts[p], ends[p]) for p in parts]
            count = 0
            for span in spans:
                records = self._watch(
                    topic, read_span(consumer, span, topic), seen, triggers.get(topic), id_topics.get(topic)
                )
                task = f"window: {topic}[{span.partition}]"
                count += writer.write_records(
                    "slice", topic, span.partition, self._counted(task, records, span.size)
                ).records
            topics[topic] = self._topic_note(full, parts, spans, count)
        history = self._history(scope, seen, window_starts, consumer, writer) if plan.history else {}
        outputs = self._outputs(plan, scope, seen, consumer, writer)
        events = list(self._control(consumer, writer))
        timeline = serving_timeline(events)
        models = self._models(plan, writer, outputs.pop("versions"), timeline, start_ms)
        schemas = self._schemas(seen, writer)
        return {
            "created_at": datetime.now(UTC).isoformat(),
            "host": socket.gethostname(),
            "window": {"from": plan.start.isoformat(), "to": plan.end.isoformat()},
            "source": {"bootstrap_servers": str(self.bootstrap), "topic_prefix": self.contracts.catalog.prefix},
            "settings": self.settings_note,
            "asked_topics": list(plan.topics),
            "added_sources": list(scope.added),
            "feature_sets": list(scope.sets),
            "topics": topics,
            "first_event_us": seen.first_us,
            "undecodable_in_window": seen.undecodable,
            "history": history,
            "outputs": outputs,
            "model_events": len(events),
            "serving": timeline,
            "models": models,
            "schemas": schemas,
        }

    def _topic_note(self, full: str, parts: list[int], spans: list[Span], records: int) -> dict[str, Any]:
        admin = TopicAdmin(self.bootstrap)
        configs = {k: v for k, v in admin.configs(full).items() if v is not None}
        return {
            "name": full,
            "partitions": len(parts),
            "configs": configs,
            "offsets": {str(s.partition): [s.start, s.end] for s in spans},
            "records": records,
        }

    def _watch(
        self,
        topic: str,
        records: Iterator[SliceRecord],
        seen: _Seen,
        time_field: str | None,
        id_field: str | None,
    ) -> Iterator[SliceRecord]:
        """Pass records through, noting fingerprints, ids of scored inputs and the first scored event's time."""
        serde = self.contracts.serde(topic)
        ids = seen.ids.setdefault(topic, set()) if id_field else None
        for record in records:
            if record.value is not None and len(record.value) >= 10 and record.value[:2] == b"\xc3\x01":
                seen.fingerprints.add(bytes(record.value[2:10]))
            if time_field is not None or ids is not None:
                try:
                    value = serde.decode(record.value)
                except DecodeError:
                    seen.undecodable[topic] = seen.undecodable.get(topic, 0) + 1
                    yield record
                    continue
                if time_field is not None:
                    t = micros(value[time_field])
                    seen.first_us[topic] = min(seen.first_us.get(topic, t), t)
                if ids is not None and id_field is not None:
                    ids.add(str(value[id_field]))
            yield record

    def _history(
        self,
        scope: Scope,
        seen: _Seen,
        window_starts: dict[str, dict[int, int]],
        consumer: Consumer,
        writer: SliceWriter,
    ) -> dict[str, Any]:
        if not seen.first_us:
            return {}
        first = min(seen.first_us.values())
        notes: dict[str, Any] = {"first_scored_event_us": first, "topics": {}}
        for rule in scope.history:
            full = self.contracts.topic(rule.topic)
            parts = partitions_of(consumer, full)
            spans = [Span(full, p, watermarks(consumer, full, p)[0], window_starts[rule.topic][p]) for p in parts]
            since = first - rule.reach_us
            serde = self.contracts.serde(rule.topic)
            tally = _Tally()

            for span in spans:
                task = f"history: {rule.topic}[{span.partition}]"
                kept = _since(read_span(consumer, span, rule.topic), serde, rule.time_field, since, tally)
                records = self._counted(task, kept, span.size)
                writer.write_records("history", rule.topic, span.partition, records)
            notes["topics"][rule.topic] = {
                "time_field": rule.time_field,
                "reach_s": rule.reach_us / 1e6,
                "since_us": since,
                "records": tally.kept,
                "undecodable_skipped": tally.skipped,
                "oldest_retained_us": tally.oldest,
                # retention may have deleted part of what the windows reach (a log that no longer starts at offset
                # 0 and whose oldest record is younger than the reach): the replay's state then lacks it
                "complete": tally.oldest is None or tally.oldest <= since or all(s.start == 0 for s in spans),
                "from_offsets": {str(s.partition): s.start for s in spans},
            }
        return notes

    def _outputs(
        self, plan: RecordPlan, scope: Scope, seen: _Seen, consumer: Consumer, writer: SliceWriter
    ) -> dict[str, Any]:
        """Each output of a window input, found from just before the window to the end, waiting for stragglers."""
        notes: dict[str, Any] = {"versions": set()}
        for spec in scope.outputs:
            want = seen.ids.get(spec.input_topic, set())
            full = self.contracts.topic(spec.topic)
            parts = partitions_of(consumer, full)
            serde = self.contracts.serde(spec.topic)
            found: dict[str, SliceRecord] = {}
            starts = offsets_at(consumer, full, parts, _ms(plan.start) - 5_000)
            last_new = time.monotonic()
            while True:
                ends = {p: watermarks(consumer, full, p)[1] for p in parts}
                for span in (Span(full, p, starts[p], ends[p]) for p in parts):
                    for record in read_span(consumer, span, spec.topic):
                        try:
                            value = serde.decode(record.value)
                        except DecodeError:
                            continue
                        key = str(value[spec.id_field])
                        if key in want and key not in found:
                            found[key] = record
                            notes["versions"].add((str(value["model_name"]), str(value["model_version"])))
                            last_new = time.monotonic()
                    starts[span.partition] = span.end
                self.progress(f"outputs: {spec.topic}", len(found), len(want))
                if len(found) >= len(want) or time.monotonic() - last_new > plan.settle_s:
                    break
                time.sleep(0.5)
            for p in parts:
                ordered = sorted((r for r in found.values() if r.partition == p), key=lambda r: r.offset)
                writer.write_records("outputs", spec.topic, p, iter(ordered))
            notes[spec.topic] = {"inputs": len(want), "found": len(found), "missing": len(want) - len(found)}
        return notes

    def _control(self, consumer: Consumer, writer: SliceWriter) -> Iterator[dict[str, Any]]:
        full = self.contracts.topic(MODEL_EVENTS)
        spans = [Span(full, p, *watermarks(consumer, full, p)) for p in partitions_of(consumer, full)]
        records: list[SliceRecord] = []
        for span in spans:
            mine = list(read_span(consumer, span, MODEL_EVENTS))
            writer.write_records("control", MODEL_EVENTS, span.partition, iter(mine))
            records.extend(mine)
        serde = self.contracts.serde(MODEL_EVENTS)
        for record in records:
            try:
                event = serde.decode(record.value)
            except DecodeError:
                continue
            event["_timestamp_ms"] = record.timestamp_ms
            yield event

    def _models(
        self,
        plan: RecordPlan,
        writer: SliceWriter,
        versions: set[tuple[str, str]],
        timeline: dict[str, list[dict[str, Any]]],
        start_ms: int,
    ) -> dict[str, Any]:
        """The ONNX model and card of every version that served the window (or was champion at its start)."""
        wanted = set(versions)
        for model, changes in timeline.items():
            before = [c for c in changes if c["timestamp_ms"] <= start_ms]
            if before:
                wanted.add((model, str(before[-1]["version"])))
        notes: dict[str, Any] = {}
        if not plan.models or self.registry is None:
            return {f"{m}/{v}": {"included": False, "why": "not asked"} for m, v in sorted(wanted)}
        for i, (model, version) in enumerate(sorted(wanted)):
            self.progress("models", i, len(wanted))
            try:
                loaded = self.registry.load_version(model, version)
            except SlipstreamError as exc:
                notes[f"{model}/{version}"] = {"included": False, "why": str(exc)}
                continue
            base = f"models/{model}/{version}"
            writer.write_bytes(f"{base}/model.onnx", loaded.onnx_bytes)
            writer.write_json(f"{base}/card.json", loaded.card)
            notes[f"{model}/{version}"] = {"included": True, "sha256": loaded.card.get("onnx_sha256")}
        return notes

    def _schemas(self, seen: _Seen, writer: SliceWriter) -> dict[str, str]:
        known = self.contracts.registry.by_fingerprint
        out: dict[str, str] = {}
        for fp in sorted(seen.fingerprints):
            version = known.get(fp)
            if version is None:
                continue  # a value no contract knows: it was dead-lettered where it was read
            name = f"schemas/{version.name}.v{version.version}.avsc"
            if name not in writer.members:
                writer.write_json(name, dict(version.raw))
            out[fp.hex()] = name
        return out

    def _counted(self, task: str, records: Iterator[SliceRecord], total: int) -> Iterator[SliceRecord]:
        done = 0
        self.progress(task, 0, total)
        for record in records:
            done += 1
            if done % 5000 == 0:
                self.progress(task, done, total)
            yield record
        self.progress(task, total, total)


@dataclass
class _Tally:
    kept: int = 0
    skipped: int = 0
    oldest: int | None = None


def _since(
    records: Iterator[SliceRecord], serde: AvroSerde, field: str, since: int, tally: _Tally
) -> Iterator[SliceRecord]:
    """The records whose ``field`` is at or after ``since``; undecodable ones are skipped (they were dead-lettered
    when first read and never reached any state)."""
    for record in records:
        try:
            t = micros(serde.decode(record.value)[field])
        except DecodeError:
            tally.skipped += 1
            continue
        tally.oldest = t if tally.oldest is None else min(tally.oldest, t)
        if t >= since:
            tally.kept += 1
            yield record


def _ms(value: datetime) -> int:
    return micros(value) // 1000
