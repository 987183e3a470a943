"""`slipstream outcomes`: the label joiner as a Kafka processor — predictions, shadow comparisons and labels in,
``outcomes`` out, exactly once (:mod:`slipstream.monitoring.transactional`), state in a compacted changelog.

All three inputs are keyed by the customer, so an event's prediction, its challenger scores and its label share a
partition number; one :class:`~slipstream.monitoring.outcomes.join.LabelJoin` per partition owns them.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any

from slipstream.monitoring.exceptions import JoinError
from slipstream.monitoring.hosts import HostFactory
from slipstream.monitoring.outcomes.join import JoinCounts, LabelJoin
from slipstream.monitoring.transactional import Emitted, ProcessorStats, TransactionalProcessor
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.transport.connection import KafkaLike
from slipstream.schemas.transport.consumer import ConsumedEvent

INPUTS = ("predictions", "shadow-comparisons", "labels")
# What the join reads of each input (and the validators check): the rest of a record (a prediction's feature map,
# freshness and timings, a comparison's champion side) is walked past undecoded; timestamps come as epoch micros.
FIELDS = {
    "predictions": (
        "prediction_id",
        "event_id",
        "customer_id",
        "model_name",
        "model_version",
        "score",
        "decision",
        "threshold",
        "event_time",
        "role",
        "terminal_id",
    ),
    "shadow-comparisons": (
        "event_id",
        "customer_id",
        "model_name",
        "event_time",
        "challenger_version",
        "challenger_score",
        "challenger_threshold",
        "challenger_decision",
    ),
    "labels": ("transaction_id", "customer_id", "terminal_id", "tx_event_time", "event_time", "is_fraud"),
}
CHANGELOG = "outcomes-join.changelog"
DAY_US = 86_400_000_000


@dataclass(frozen=True, slots=True)
class JoinSettings:
    horizon_days: float = 30.0
    grace_days: float = 1.0
    group_id: str = "slipstream-outcomes"
    worker: str = "0"

    def __post_init__(self) -> None:
        if not self.horizon_days > 0:
            msg = f"horizon_days must be > 0, got {self.horizon_days!r}"
            raise JoinError(msg)
        if not self.grace_days >= 0:
            msg = f"grace_days must be >= 0, got {self.grace_days!r}"
            raise JoinError(msg)


class OutcomeHandler:
    """The :class:`~slipstream.monitoring.transactional.Handler` of the label join."""

    def __init__(self, contracts: Contracts, settings: JoinSettings) -> None:
        self.settings = settings
        self._logical = {contracts.topic(t): t for t in INPUTS}
        self.joins: dict[int, LabelJoin] = {}
        self._retired = JoinCounts()  # counts of partitions handed to another member (kept for the totals)

    def _new(self) -> LabelJoin:
        s = self.settings
        return LabelJoin(round(s.horizon_days * DAY_US), round(s.grace_days * DAY_US))

    def assign(self, partition: int, restored: Mapping[bytes, bytes]) -> None:
        join = self._new()
        join.restore(restored)
        self.joins[partition] = join

    def revoke(self, partition: int) -> None:
        join = self.joins.pop(partition, None)
        if join is not None:
            for name in JoinCounts.__slots__:
                setattr(self._retired, name, getattr(self._retired, name) + getattr(join.counts, name))

    def process(self, events: Sequence[ConsumedEvent]) -> Emitted:
        out = Emitted()
        touched: set[int] = set()
        for event in events:
            join = self.joins.get(event.partition)
            if join is None:  # a record of a partition revoked mid-batch: it is read again by its new owner
                continue
            topic = self._logical[event.topic]
            value: Mapping[str, Any] = event.value
            if topic == "labels":
                records = join.on_label(value)
            elif topic == "predictions":
                records = join.on_prediction(value)
            else:
                records = join.on_comparison(value)
            out.records.extend(("outcomes", r) for r in records)
            touched.add(event.partition)
        for partition in sorted(touched):
            out.changelog.extend((partition, k, v) for k, v in self.joins[partition].changes())
        return out

    def at_end(self, ends: Set[tuple[str, int]]) -> Emitted:
        """Which input partitions have nothing more to read just now: they stop holding their join's clock back."""
        out = Emitted()
        for partition, join in self.joins.items():
            records = join.set_idle(frozenset(topic for topic, p in ends if p == partition))
            if records:
                out.records.extend(("outcomes", r) for r in records)
                out.changelog.extend((partition, k, v) for k, v in join.changes())
        return out

    def tick(self, now_s: float) -> Emitted:
        return Emitted()  # expiry follows event time (records), never the wall clock

    def counts(self) -> JoinCounts:
        total = JoinCounts(**{n: getattr(self._retired, n) for n in JoinCounts.__slots__})
        for join in self.joins.values():
            for name in JoinCounts.__slots__:
                setattr(total, name, getattr(total, name) + getattr(join.counts, name))
        return total

    def entries(self) -> int:
        return sum(len(j.entries) for j in self.joins.values())


def run_outcomes(
    bootstrap_servers: KafkaLike,
    contracts: Contracts,
    settings: JoinSettings,
    stop: threading.Event,
    *,
    until_idle_s: float | None = None,
    host: HostFactory = TransactionalProcessor,
) -> tuple[ProcessorStats, JoinCounts]:
    """Run the label join until ``stop`` (or idle for ``until_idle_s``) in ``host`` (the Kafka runtime's
    :class:`TransactionalProcessor`, or another runtime's: ``slipstream.processor_hosts``); its stats and counts."""
    handler = OutcomeHandler(contracts, settings)
    processor = host(
        bootstrap_servers,
        contracts,
        group_id=contracts.catalog.prefix + settings.group_id,
        inputs=INPUTS,
        handler=handler,
        transactional_id=f"{contracts.catalog.prefix}{settings.group_id}-{settings.worker}",
        changelog=CHANGELOG,
        processor_name="outcomes",
        fields=FIELDS,
        # labels come days after their predictions: half a second more buys bigger batches, less CPU per record
        poll_s=0.2,
        fetch_wait_ms=500,
        fetch_min_bytes=256 * 1024,
    )
    try:
        stats = processor.run(stop, until_idle_s=until_idle_s)
    finally:
        processor.close()
    return stats, handler.counts()
