"""How a feature set is computed online, derived from its definition alone: stages, repartitions, changelogs.

:func:`derive` groups the set's views into stages by the first join key of their entity (the stage's partition key),
in the order the views are declared. A view keyed by ``(user_id, item_id)`` lives in the ``user_id`` stage: every
event of one user reaches one partition there. The first stage reads every source topic of the set directly; those
topics must be keyed by its partition key (checked against the topic catalog). Each later stage reads a repartition
topic, ``engine.<set>.by-<stage>``, to which the stage before it forwards every event (trigger events with the
features computed so far) keyed by the later stage's key. Each stage keeps its window state in a compacted changelog,
``engine.<set>.<stage>.changelog``. The last stage emits the complete vector to ``feature-log``.

The shipped sets give::

    fraud: transactions + labels (by customer) -> [customer] -> engine.fraud.by-terminal -> [terminal] -> feature-log
    reco:  interactions (by user) -> [user: user, user_category, user_item] -> engine.reco.by-item -> [item] -> ...

The internal topics are declared by :meth:`Topology.topics`; the engine creates them itself when it starts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from slipstream.features.base import FeatureSet, FeatureView
from slipstream.schemas.exceptions import TopicError
from slipstream.schemas.topics import DAY_MS, TOPICS, TopicCatalog, TopicSpec
from slipstream.streams.engine.exceptions import TopologyError

INTERNAL_PREFIX = "engine."
REPARTITION_RETENTION_MS = 7 * DAY_MS


@dataclass(frozen=True, slots=True)
class StageSpec:
    name: str
    inputs: tuple[str, ...]
    partition_key: str
    views: tuple[FeatureView, ...]
    forward_topic: str | None = None
    forward_key: str | None = None
    changelog_topic: str = ""

    @property
    def direct(self) -> bool:
        """Reads producer topics (Avro contracts), not an internal repartition topic."""
        return not self.inputs[0].startswith(INTERNAL_PREFIX)


@dataclass(frozen=True, slots=True)
class Topology:
    feature_set: FeatureSet
    stages: tuple[StageSpec, ...]

    def stage(self, name: str) -> StageSpec:
        for stage in self.stages:
            if stage.name == name:
                return stage
        known = ", ".join(s.name for s in self.stages)
        msg = f"feature set {self.feature_set.name!r} has no stage {name!r}; stages: {known}"
        raise TopologyError(msg)

    @property
    def topics_read(self) -> tuple[str, ...]:
        """Every source topic of the set, the trigger first (the first stage reads them all)."""
        return _sources(self.feature_set)

    def topics(self) -> tuple[TopicSpec, ...]:
        """The engine's internal topics for this set: a repartition per later stage, a changelog per stage."""
        name = self.feature_set.name
        out: list[TopicSpec] = []
        for stage in self.stages:
            if not stage.direct:
                out.append(
                    TopicSpec(
                        stage.inputs[0],
                        None,
                        stage.partition_key,
                        retention_ms=REPARTITION_RETENTION_MS,
                        description=f"Internal: {name} events (with the features so far), by {stage.partition_key}.",
                    )
                )
            out.append(
                TopicSpec(
                    stage.changelog_topic,
                    None,
                    "key",
                    retention_ms=-1,
                    cleanup_policy="compact",
                    description=f"Internal: state of the feature engine's {name}.{stage.name} stage (compacted).",
                )
            )
        return tuple(out)


def derive(feature_set: FeatureSet, catalog: TopicCatalog | None = None) -> Topology:
    """The online topology of ``feature_set``; ``catalog`` (default: the contract topics) gives each topic's key."""
    catalog = catalog if catalog is not None else TopicCatalog(specs=TOPICS)
    groups: dict[str, list[FeatureView]] = {}
    for view in feature_set.views:
        groups.setdefault(view.entity.join_keys[0], []).append(view)
    if not groups:
        msg = f"feature set {feature_set.name!r} has no views: nothing to compute online"
        raise TopologyError(msg)
    keys = list(groups)
    names = [groups[key][0].entity.name for key in keys]
    if len(set(names)) != len(names):
        msg = f"feature set {feature_set.name!r}: two stages would share the name of entity {names}"
        raise TopologyError(msg)
    sources = _sources(feature_set)
    for topic in sources:
        _check_keyed(feature_set, catalog, topic, keys[0])
    stages = []
    for i, (key, name) in enumerate(zip(keys, names, strict=True)):
        following = i + 1 < len(keys)
        stages.append(
            StageSpec(
                name,
                sources if i == 0 else (_repartition(feature_set, name),),
                key,
                tuple(groups[key]),
                _repartition(feature_set, names[i + 1]) if following else None,
                keys[i + 1] if following else None,
                f"{INTERNAL_PREFIX}{feature_set.name}.{name}.changelog",
            )
        )
    return Topology(feature_set, tuple(stages))


def required_fields(topology: Topology, topic: str) -> set[str]:
    """The fields every event of ``topic`` must carry through the engine: the join keys, time, id and value fields of
    every view that reads it, and the key of every repartition it travels through."""
    needed: set[str] = set()
    for stage in topology.stages:
        if stage.forward_key is not None:
            needed.add(stage.forward_key)
        for view in stage.views:
            for source in view.sources:
                if source.topic == topic:
                    needed.update(view.entity.join_keys)
                    needed.update((source.time_field, source.id_field, *source.fields))
                    needed.update(f for f in (source.known_by,) if f)
    return needed


def check_fields(topology: Topology, topic: str, available: Iterable[str]) -> None:
    """Refuse a topic whose contract lacks a field the engine needs of it (named, before any event is read)."""
    missing = sorted(required_fields(topology, topic) - set(available))
    if missing:
        msg = (
            f"feature set {topology.feature_set.name!r} needs fields {missing} of topic {topic!r}, whose contract"
            " does not have them"
        )
        raise TopologyError(msg)


def engine_topics(feature_sets: Iterable[FeatureSet]) -> tuple[TopicSpec, ...]:
    """The internal topics of every given set, for a catalog that lists everything a deployment uses."""
    return tuple(spec for fs in feature_sets for spec in derive(fs).topics())


def _sources(feature_set: FeatureSet) -> tuple[str, ...]:
    """Every topic the set's views read, the trigger first, then in declaration order."""
    topics = [feature_set.trigger]
    for view in feature_set.views:
        topics.extend(s.topic for s in view.sources if s.topic not in topics)
    return tuple(topics)


def _repartition(feature_set: FeatureSet, stage: str) -> str:
    return f"{INTERNAL_PREFIX}{feature_set.name}.by-{stage}"


def _check_keyed(feature_set: FeatureSet, catalog: TopicCatalog, topic: str, key: str) -> None:
    try:
        spec = catalog.spec(topic)
    except TopicError as exc:
        msg = f"feature set {feature_set.name!r} reads topic {topic!r}, which is not declared: {exc}"
        raise TopologyError(msg) from exc
    if spec.key_field != key:
        msg = (
            f"feature set {feature_set.name!r}: topic {topic!r} is keyed by {spec.key_field!r}, but the first stage"
            f" ({feature_set.views[0].entity.name}) is partitioned by {key!r}; declare a view keyed by"
            f" {spec.key_field!r} first"
        )
        raise TopologyError(msg)


def topology_for(feature_set: str | FeatureSet) -> Topology:
    """The topology of a set, or of a registered set by name (see ``slipstream.features.definitions``)."""
    if isinstance(feature_set, FeatureSet):
        return derive(feature_set)
    from slipstream.features.definitions import feature_sets

    known = feature_sets()
    chosen = known.get(feature_set)
    if chosen is None:
        msg = f"no feature set {feature_set!r}; known: {', '.join(known)}"
        raise TopologyError(msg)
    return derive(chosen)
