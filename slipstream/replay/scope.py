"""What a slice must hold to be replayed: derived from the feature definitions and the scorer's contracts (pure).

- **Sources.** Recording a feature set's trigger topic (``transactions``) records every source of that set too
  (``labels``): the engine's state depends on all of them.
- **History.** The state at the window's start is rebuilt by replaying, before the window, every source record whose
  time can still reach a window of a scored event: per source topic, the furthest reach of a view reading it
  (window length + delay) plus the allowed lateness, back from the first scored event's time.
- **Outputs.** The scorer's outputs (``predictions`` of ``transactions``) are matched to the window's inputs by id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from slipstream.features.base import FeatureSet

US_PER_S = 1_000_000


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """An output topic of the scorer, matched to its input by an id field of each."""

    topic: str
    input_topic: str
    id_field: str
    input_id_field: str
    time_field: str  # the input's time field (event time of the scored event)


#: The Kafka scorer's outputs. Recommendations are not replayed yet (see docs/replay.md).
OUTPUTS: tuple[OutputSpec, ...] = (
    OutputSpec("predictions", "transactions", "event_id", "transaction_id", "event_time"),
)


@dataclass(frozen=True, slots=True)
class HistoryRule:
    """Keep a source record of ``topic`` when ``time_field`` >= (first scored event time) - ``reach_us``."""

    topic: str
    time_field: str
    reach_us: int


@dataclass(frozen=True, slots=True)
class Scope:
    topics: tuple[str, ...]  # the window's topics, sources added
    added: tuple[str, ...]  # sources added to what was asked
    sets: tuple[str, ...]  # feature sets whose trigger is recorded
    history: tuple[HistoryRule, ...]
    outputs: tuple[OutputSpec, ...]

    def rule(self, topic: str) -> HistoryRule | None:
        return next((r for r in self.history if r.topic == topic), None)


def scope_for(asked: Iterable[str], feature_sets: Mapping[str, FeatureSet], lateness_s: float) -> Scope:
    """The topics, history and outputs recording ``asked`` needs."""
    topics = list(dict.fromkeys(asked))
    sets = [fs for fs in feature_sets.values() if fs.trigger in topics]
    added: list[str] = []
    reach: dict[str, tuple[str, int]] = {}
    lateness_us = int(lateness_s * US_PER_S)
    for fs in sets:
        for view in fs.views:
            for source in view.sources:
                if source.topic not in topics:
                    topics.append(source.topic)
                    added.append(source.topic)
                before = reach.get(source.topic, (source.time_field, 0))[1]
                reach[source.topic] = (source.time_field, max(before, view.reach_us + lateness_us))
    history = tuple(HistoryRule(t, field, us) for t, (field, us) in sorted(reach.items()))
    outputs = tuple(o for o in OUTPUTS if o.input_topic in topics)
    return Scope(tuple(topics), tuple(added), tuple(fs.name for fs in sets), history, outputs)


def trigger_time_fields(feature_sets: Mapping[str, FeatureSet], names: Iterable[str]) -> dict[str, str]:
    """Per trigger topic of the named sets, the time field of its events (what a scored event's time is)."""
    out: dict[str, str] = {}
    for name in names:
        fs = feature_sets[name]
        for view in fs.views:
            for source in view.sources:
                if source.topic == fs.trigger:
                    out[fs.trigger] = source.time_field
    return out


@dataclass(frozen=True, slots=True)
class GateRule:
    """How a source's record enters the engine: the time it counts from and the entity keys it updates."""

    time_field: str
    known_by: str | None
    keys: tuple[str, ...]


def gate_rules(names: Iterable[str]) -> dict[str, GateRule]:
    """Per source topic of the named sets: its time (when known, for a source counted once known) and the entity
    keys of the stages whose views read it (whose state it changes), for the replay's chunking
    (:class:`slipstream.replay.feed.WindowFeed`)."""
    from slipstream.streams.engine.topology import topology_for

    spec: dict[str, tuple[str, str | None]] = {}
    keys: dict[str, list[str]] = {}
    for name in names:
        for stage in topology_for(name).stages:
            for view in stage.views:
                for source in view.sources:
                    spec.setdefault(source.topic, (source.time_field, source.known_by))
                    found = keys.setdefault(source.topic, [])
                    if stage.partition_key not in found:
                        found.append(stage.partition_key)
    return {topic: GateRule(*spec[topic], tuple(keys[topic])) for topic in spec}
