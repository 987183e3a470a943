"""`slipstream shadow`: the shadow consumer as a :class:`~slipstream.monitoring.transactional.Handler`.

Inputs ``predictions``, ``recommendations`` and ``feature-log`` (co-partitioned, read in one group with the range
assignor, so partition ``p`` of each is this member's together); outputs ``shadow-comparisons``,
``shadow-rankings`` and, for a prediction whose vector never came, ``dead-letter``; state (the feature join of
:mod:`~slipstream.monitoring.shadow.feature_join`) in the compacted changelog ``shadow-join.changelog``. Outputs,
changelog and input offsets commit in one Kafka transaction, so after a crash each prediction is compared exactly
once per challenger (the challengers in force when it is processed).

Per batch and per challenger one ONNX call: for a prediction, each binary challenger of its model scores the
prediction's own feature map when it covers the challenger's features, else the event's feature-log vector (at once
when buffered, else the prediction is parked until it comes); each ranking challenger re-ranks every recommendation
of its model. A recommendation whose items lack a feature the challenger needs is dead-lettered, never dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from slipstream.features.windows import to_micros
from slipstream.monitoring.exceptions import ShadowError
from slipstream.monitoring.shadow.challengers import Challenger, ChallengerSet
from slipstream.monitoring.shadow.compare import (
    FEATURE_LOG,
    PREDICTION,
    compare_predictions,
    compare_rankings,
    covers,
    missing,
)
from slipstream.monitoring.shadow.feature_join import FeatureJoin, JoinCounts, Parked
from slipstream.monitoring.transactional import Emitted
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.dead_letter import RawMessage, envelope
from slipstream.schemas.topics import TopicSpec
from slipstream.schemas.transport.consumer import ConsumedEvent

INPUTS = ("predictions", "recommendations", "feature-log")
CHANGELOG = "shadow-join.changelog"
PROCESSOR = "shadow"
MISSING_VECTOR = "feature_vector_missing"
MISSING_ITEM_FEATURES = "item_features_missing"


def changelog_spec(partitions: int) -> TopicSpec:
    """The shadow consumer's changelog, with as many partitions as its inputs (created at start, like the engine's
    internal topics)."""
    return TopicSpec(
        CHANGELOG,
        None,
        "event_id",
        partitions=partitions,
        retention_ms=-1,
        cleanup_policy="compact",
        description="The shadow consumer's feature-log join: buffered vectors and parked predictions (compacted).",
    )


@dataclass(frozen=True, slots=True)
class JoinBound:
    """The feature join's bound per partition: entries (vectors + parked predictions) and event-time span."""

    max_entries: int = 20_000
    span_s: float = 60.0

    def __post_init__(self) -> None:
        if self.max_entries < 1 or not self.span_s >= 0:
            msg = f"join bound needs max_entries >= 1 and span_s >= 0, got {self.max_entries}, {self.span_s}"
            raise ShadowError(msg)


@dataclass(slots=True)
class ShadowCounts:
    compared: int = 0  # shadow-comparisons written
    from_feature_log: int = 0  # of which scored on the feature-log vector
    ranked: int = 0  # shadow-rankings written
    dead_lettered: int = 0  # predictions whose vector never came + recommendations missing item features
    join: JoinCounts = field(default_factory=JoinCounts)


class ShadowHandler:
    """Compares every champion output with every challenger in force (``challengers``), per batch."""

    def __init__(
        self,
        contracts: Contracts,
        challengers: ChallengerSet,
        bound: JoinBound = JoinBound(),
        *,
        feature_sets: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.contracts = contracts
        self.challengers = challengers
        self.bound = bound
        self.feature_sets = dict(feature_sets or {})  # model name -> feature set of its feature-log vectors
        self.clock = clock
        self._logical = {contracts.topic(t): t for t in INPUTS}
        self._serde = contracts.serde("predictions")
        self.joins: dict[int, FeatureJoin] = {}
        self.counts = ShadowCounts()
        self._retired = JoinCounts()
        self._covered: dict[str, frozenset[str]] = {}  # model -> the champion's feature names, last seen

    def feature_set(self, model_name: str) -> str:
        return self.feature_sets.get(model_name, model_name)

    # --- partitions ---

    def _new_join(self) -> FeatureJoin:
        return FeatureJoin(self.bound.max_entries, round(self.bound.span_s * 1e6), self._serde.decode)

    def assign(self, partition: int, restored: Mapping[bytes, bytes]) -> None:
        join = self._new_join()
        join.restore(restored)
        self.joins[partition] = join

    def revoke(self, partition: int) -> None:
        join = self.joins.pop(partition, None)
        if join is not None:
            for name in JoinCounts.__slots__:
                setattr(self._retired, name, getattr(self._retired, name) + getattr(join.counts, name))

    def join_counts(self) -> JoinCounts:
        total = JoinCounts(**{n: getattr(self._retired, n) for n in JoinCounts.__slots__})
        for join in self.joins.values():
            for name in JoinCounts.__slots__:
                setattr(total, name, getattr(total, name) + getattr(join.counts, name))
        return total

    # --- records ---

    def process(self, events: Sequence[ConsumedEvent]) -> Emitted:
        challengers = self.challengers.snapshot()
        now = self.clock()
        out = Emitted()
        by_challenger: dict[Challenger, tuple[list[Mapping[str, Any]], list[Mapping[str, float]], list[str]]] = {}
        rankings: dict[Challenger, list[Mapping[str, Any]]] = {}
        touched: set[int] = set()
        buffering = self._buffered_sets(challengers)
        for event in events:
            join = self.joins.get(event.partition)
            if join is None:  # a record of a partition revoked mid-batch: its new owner reads it again
                continue
            topic = self._logical[event.topic]
            value = event.value
            if topic == "feature-log":
                if value["feature_set"] in buffering or join.parked:
                    touched.add(event.partition)
                    done = join.on_vector(
                        value["feature_set"], value["event_id"], to_micros(value["event_time"]), value["features"]
                    )
                    for parked in done:
                        self._complete(parked, value["features"], challengers, by_challenger)
            elif topic == "predictions":
                self._on_prediction(event, join, challengers, by_challenger, touched)
            else:
                self._on_recommendation(event, challengers, rankings, out, now)
        for challenger, (predictions, vectors, sources) in by_challenger.items():
            for source in (PREDICTION, FEATURE_LOG):
                picked = [i for i, s in enumerate(sources) if s == source]
                if picked:
                    records = compare_predictions(
                        [predictions[i] for i in picked], [vectors[i] for i in picked], source, challenger, now
                    )
                    out.records.extend(("shadow-comparisons", r) for r in records)
                    self.counts.compared += len(records)
                    self.counts.from_feature_log += len(records) if source == FEATURE_LOG else 0
        for challenger, recs in rankings.items():
            records = compare_rankings(recs, challenger, now)
            out.records.extend(("shadow-rankings", r) for r in records)
            self.counts.ranked += len(records)
        for partition in sorted(touched):
            join = self.joins[partition]
            for parked in join.expire():
                out.records.append(("dead-letter", self._expired(parked, now)))
                self.counts.dead_lettered += 1
            out.changelog.extend((partition, k, v) for k, v in join.changes())
        return out

    def tick(self, now_s: float) -> Emitted:
        return Emitted()  # the join expires on event time (records), never on the wall clock

    def _buffered_sets(self, challengers: Sequence[Challenger]) -> set[str]:
        """Feature sets whose vectors some challenger may need: one of a model whose champion's features (last
        seen) do not cover it, or of a model whose champion is not seen yet."""
        sets: set[str] = set()
        for c in challengers:
            if c.kind == "binary":
                seen = self._covered.get(c.model_name)
                if seen is None or not seen.issuperset(c.feature_names):
                    sets.add(self.feature_set(c.model_name))
        return sets

    def _on_prediction(
        self,
        event: ConsumedEvent,
        join: FeatureJoin,
        challengers: Sequence[Challenger],
        by_challenger: dict[Challenger, tuple[list[Mapping[str, Any]], list[Mapping[str, float]], list[str]]],
        touched: set[int],
    ) -> None:
        prediction = event.value
        if prediction.get("role", "CHAMPION") != "CHAMPION":
            return
        model = prediction["model_name"]
        features: Mapping[str, float] = prediction["features"]
        self._covered[model] = frozenset(features)
        waiting: list[tuple[str, str]] = []
        vector: dict[str, float] | None = None
        looked = False
        for c in challengers:
            if c.model_name != model or c.kind != "binary":
                continue
            if covers(c, features):
                _add(by_challenger, c, prediction, features, PREDICTION)
                continue
            if not looked:
                touched.add(event.partition)
                vector = join.lookup(
                    self.feature_set(model), prediction["event_id"], to_micros(prediction["event_time"])
                )
                looked = True
            if vector is not None:
                _add(by_challenger, c, prediction, vector, FEATURE_LOG)
            else:
                waiting.append((c.alias, c.version))
        if waiting:
            join.park(
                Parked(
                    prediction=prediction,
                    raw=self._serde.encode(prediction),
                    waiting=tuple(waiting),
                    feature_set=self.feature_set(model),
                    event_time_us=to_micros(prediction["event_time"]),
                    topic=event.topic,
                    partition=event.partition,
                    offset=event.offset,
                    timestamp_ms=event.timestamp_ms,
                    key=event.key,
                )
            )

    def _complete(
        self,
        parked: Parked,
        vector: Mapping[str, float],
        challengers: Sequence[Challenger],
        by_challenger: dict[Challenger, tuple[list[Mapping[str, Any]], list[Mapping[str, float]], list[str]]],
    ) -> None:
        """A parked prediction's vector came: the challengers it waited for that are still in force score it."""
        live = {(c.model_name, c.alias, c.version): c for c in challengers}
        model = parked.prediction["model_name"]
        for alias, version in parked.waiting:
            c = live.get((model, alias, version))
            if c is not None:
                _add(by_challenger, c, parked.prediction, vector, FEATURE_LOG)

    def _on_recommendation(
        self,
        event: ConsumedEvent,
        challengers: Sequence[Challenger],
        rankings: dict[Challenger, list[Mapping[str, Any]]],
        out: Emitted,
        now: datetime,
    ) -> None:
        rec = event.value
        items: list[Mapping[str, Any]] = rec["items"]
        ids = [int(item["item_id"]) for item in items]
        for c in challengers:
            if c.model_name != rec["model_name"] or c.kind != "ranking":
                continue
            lacking = sorted({n for item in items for n in missing(c, item["features"])})
            if lacking or len(set(ids)) != len(ids):
                why = f"items lack features {lacking[:5]}" if lacking else f"repeated item ids in {ids}"
                reason = f"challenger {c.alias} ({c.model_name} v{c.version}) cannot re-rank {rec['request_id']}: {why}"
                raw = RawMessage(
                    event.topic,
                    event.partition,
                    event.offset,
                    event.timestamp_ms,
                    event.key,
                    self.contracts.serde("recommendations").encode(rec),
                )
                record = envelope(
                    raw, error_type=MISSING_ITEM_FEATURES, reason=reason, processor=PROCESSOR, failed_at=now
                )
                out.records.append(("dead-letter", record))
                self.counts.dead_lettered += 1
                continue
            rankings.setdefault(c, []).append(rec)

    def _expired(self, parked: Parked, now: datetime) -> dict[str, Any]:
        raw = RawMessage(parked.topic, parked.partition, parked.offset, parked.timestamp_ms, parked.key, parked.raw)
        waited = ", ".join(f"{alias} (v{version})" for alias, version in parked.waiting)
        reason = (
            f"prediction {parked.prediction_id}: no feature-log vector of event {parked.prediction['event_id']!r} "
            f"(feature set {parked.feature_set!r}) within the join bound ({self.bound.span_s:g} s of event time, "
            f"{self.bound.max_entries} entries); challengers not compared: {waited}"
        )
        return envelope(raw, error_type=MISSING_VECTOR, reason=reason, processor=PROCESSOR, failed_at=now)


def _add(
    by_challenger: dict[Challenger, tuple[list[Mapping[str, Any]], list[Mapping[str, float]], list[str]]],
    challenger: Challenger,
    prediction: Mapping[str, Any],
    vector: Mapping[str, float],
    source: str,
) -> None:
    predictions, vectors, sources = by_challenger.setdefault(challenger, ([], [], []))
    predictions.append(prediction)
    vectors.append(vector)
    sources.append(source)
