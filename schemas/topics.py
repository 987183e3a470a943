"""Every topic Slipstream uses, declared once: name, partitions, retention, cleanup policy, key and value contract.

The contract topics are declared here; a feature engine's internal topics (repartitions, changelogs) are derived from
its feature set (``slipstream.streams.engine.topology``) and added with :meth:`TopicCatalog.with_specs`.

Names take a prefix (a namespace), so tests, benchmarks and replays each get their own set on one broker:
with prefix ``bench-1a2b.`` the transactions topic is ``bench-1a2b.transactions``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from slipstream.schemas.exceptions import TopicError

DAY_MS = 24 * 3600 * 1000
_PREFIX = re.compile(r"^[A-Za-z0-9._-]*$")
_MAX_TOPIC_NAME = 249

CleanupPolicy = Literal["delete", "compact", "compact,delete"]


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic, as declared. ``key_field`` is the value field whose text is the record key (the entity).

    ``value_schema`` is ``None`` for internal topics (the feature engine's repartitions and changelogs, the
    processors' changelogs, the dead-letter re-drive log), whose values are their owner's compact JSON.
    """

    name: str
    value_schema: str | None
    key_field: str
    partitions: int = 6
    retention_ms: int = 7 * DAY_MS
    cleanup_policy: CleanupPolicy = "delete"
    description: str = ""
    extra_config: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.partitions < 1:
            msg = f"topic {self.name!r}: partitions must be >= 1, got {self.partitions}"
            raise TopicError(msg)
        if self.retention_ms < -1 or self.retention_ms == 0:
            msg = f"topic {self.name!r}: retention_ms must be > 0 or -1 (forever), got {self.retention_ms}"
            raise TopicError(msg)

    def config(self) -> dict[str, str]:
        """Topic-level broker configuration."""
        return {
            "retention.ms": str(self.retention_ms),
            "cleanup.policy": self.cleanup_policy,
            **self.extra_config,
        }


# Outputs are stamped by the broker when appended: a record's Kafka timestamp says when it was on the topic (audits,
# `bench e2e`); what the scorer knew and when (event time, received, scored) travels in the record itself.
APPEND_TIME: Mapping[str, str] = MappingProxyType({"message.timestamp.type": "LogAppendTime"})

TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(
        "transactions",
        "transaction",
        "customer_id",
        retention_ms=30 * DAY_MS,
        description="Card payments, keyed by customer.",
    ),
    TopicSpec(
        "labels",
        "label",
        "customer_id",
        retention_ms=90 * DAY_MS,
        description="Fraud labels, arriving days after their transaction.",
    ),
    TopicSpec("interactions", "interaction", "user_id", retention_ms=30 * DAY_MS, description="User-item clickstream."),
    TopicSpec(
        "predictions",
        "prediction",
        "customer_id",
        retention_ms=30 * DAY_MS,
        description="Fraud scores with features, freshness and model version.",
        extra_config=APPEND_TIME,
    ),
    TopicSpec(
        "recommendation-requests",
        "reco_request",
        "user_id",
        description="A user and retrieval candidates to rank (score-stream --reco), keyed by user.",
    ),
    TopicSpec(
        "recommendations",
        "recommendation",
        "user_id",
        description="Ranked items per user with lineage.",
        extra_config=APPEND_TIME,
    ),
    TopicSpec(
        "model-events",
        "model_event",
        "model_name",
        partitions=1,
        retention_ms=-1,
        description="Model registry changes that scorers follow.",
    ),
    TopicSpec(
        "feature-log",
        "feature_vector",
        "entity_key",
        retention_ms=30 * DAY_MS,
        description="Per-event feature vectors from the online engine (training, scoring, parity).",
    ),
    TopicSpec(
        "shadow-comparisons",
        "shadow_comparison",
        "customer_id",
        retention_ms=30 * DAY_MS,
        description="Challenger scores of the champion's exact inputs, beside the champion's (slipstream shadow).",
        extra_config=APPEND_TIME,
    ),
    TopicSpec(
        "shadow-rankings",
        "ranking_comparison",
        "user_id",
        retention_ms=30 * DAY_MS,
        description="Challenger rankers' orders of the champion's exact candidates, with rank agreement.",
        extra_config=APPEND_TIME,
    ),
    TopicSpec(
        "outcomes",
        "outcome",
        "customer_id",
        retention_ms=90 * DAY_MS,
        description="Predictions and challenger scores joined to their delayed labels (slipstream outcomes).",
        extra_config=APPEND_TIME,
    ),
    TopicSpec(
        "outcomes-join.changelog",
        None,
        "event_id",
        retention_ms=-1,
        cleanup_policy="compact",
        description="The label joiner's state per event id (compacted; tombstones once an event leaves the horizon).",
    ),
    TopicSpec(
        "drift",
        "drift_alarm",
        "model_name",
        partitions=1,
        retention_ms=-1,
        description="Drift alarms with their evidence (slipstream drift); the closed loop acts on them.",
        extra_config=APPEND_TIME,
    ),
    TopicSpec(
        "drift-windows",
        "drift_window",
        "model_name",
        partitions=1,
        retention_ms=90 * DAY_MS,
        description="Every closed drift window: each feature's and the score's statistic and threshold (dashboard).",
        extra_config=APPEND_TIME,
    ),
    TopicSpec(
        "drift.changelog",
        None,
        "model_version",
        retention_ms=-1,
        cleanup_policy="compact",
        description="The drift monitor's state per model version (compacted; partition 0 only, one worker).",
    ),
    TopicSpec(
        "dead-letter",
        "dead_letter",
        "source_topic",
        partitions=3,
        retention_ms=30 * DAY_MS,
        description="Events a processor could not use, with the reason and the original bytes.",
    ),
    TopicSpec(
        "dead-letter-quarantine",
        "dead_letter",
        "source_topic",
        partitions=3,
        retention_ms=90 * DAY_MS,
        description="Re-driven events that failed again, with the new reason; re-driven only when asked explicitly.",
    ),
    TopicSpec(
        "dead-letter-redrives",
        None,
        "envelope",
        partitions=3,
        retention_ms=-1,
        cleanup_policy="compact",
        description="Every re-drive of a dead letter (compacted JSON, keyed by the envelope's topic:partition:offset).",
    ),
)


def validate_prefix(prefix: str) -> str:
    if not _PREFIX.match(prefix):
        msg = f"topic prefix {prefix!r} may only contain letters, digits, '.', '_' and '-'"
        raise TopicError(msg)
    return prefix


@dataclass(frozen=True, slots=True)
class TopicCatalog:
    """The declared topics under one prefix."""

    prefix: str = ""
    specs: tuple[TopicSpec, ...] = TOPICS

    def __post_init__(self) -> None:
        validate_prefix(self.prefix)
        for spec in self.specs:
            if len(self.prefix + spec.name) > _MAX_TOPIC_NAME:
                msg = f"topic name {self.prefix + spec.name!r} is longer than {_MAX_TOPIC_NAME} characters"
                raise TopicError(msg)

    def __iter__(self) -> Iterator[TopicSpec]:
        return iter(self.specs)

    def spec(self, logical_name: str) -> TopicSpec:
        """The declaration of a topic by its logical (unprefixed) name or its full name."""
        bare = logical_name.removeprefix(self.prefix) if self.prefix else logical_name
        for spec in self.specs:
            if spec.name == bare:
                return spec
        known = ", ".join(s.name for s in self.specs)
        msg = f"unknown topic {logical_name!r}; declared topics: {known}"
        raise TopicError(msg)

    def name(self, logical_name: str) -> str:
        """The full (prefixed) name of a declared topic."""
        return self.prefix + self.spec(logical_name).name

    def full_names(self) -> list[str]:
        return [self.prefix + spec.name for spec in self.specs]

    def with_specs(self, extra: Iterable[TopicSpec]) -> TopicCatalog:
        """This catalog plus ``extra`` (e.g. a feature engine's internal topics); a name declared twice must agree."""
        specs = {spec.name: spec for spec in self.specs}
        for spec in extra:
            known = specs.setdefault(spec.name, spec)
            if known != spec:
                msg = f"topic {spec.name!r} is declared twice, differently: {known} and {spec}"
                raise TopicError(msg)
        return TopicCatalog(self.prefix, tuple(specs.values()))
