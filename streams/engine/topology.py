"""How a feature set is computed online: stages, each keyed by one entity, chained by repartition topics.

A stage owns the views whose entity is keyed by its partition key. Its trigger events (e.g. transactions) carry the
features computed so far to the next stage, repartitioned by the next entity; other events (labels) are passed
through to reach the stage whose views use them. The last stage emits the complete vector to ``feature-log``.

fraud: transactions + labels (by customer) -> [customer] -> engine.fraud.by-terminal -> [terminal] -> feature-log
reco:  interactions (by user) -> [user] -> engine.reco.by-item -> [item] -> feature-log
"""

from __future__ import annotations

from dataclasses import dataclass

from slipstream.features.base import FeatureSet, FeatureView
from slipstream.features.definitions import FRAUD, RECO
from slipstream.streams.engine.exceptions import TopologyError


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
        return not self.inputs[0].startswith("engine.")


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


def _fraud() -> Topology:
    customer, terminal = FRAUD.views
    return Topology(
        FRAUD,
        (
            StageSpec(
                "customer",
                ("transactions", "labels"),
                "customer_id",
                (customer,),
                "engine.fraud.by-terminal",
                "terminal_id",
                "engine.fraud.customer.changelog",
            ),
            StageSpec(
                "terminal",
                ("engine.fraud.by-terminal",),
                "terminal_id",
                (terminal,),
                changelog_topic="engine.fraud.terminal.changelog",
            ),
        ),
    )


def _reco() -> Topology:
    user, user_category, user_item, item = RECO.views
    return Topology(
        RECO,
        (
            StageSpec(
                "user",
                ("interactions",),
                "user_id",
                (user, user_category, user_item),
                "engine.reco.by-item",
                "item_id",
                "engine.reco.user.changelog",
            ),
            StageSpec(
                "item", ("engine.reco.by-item",), "item_id", (item,), changelog_topic="engine.reco.item.changelog"
            ),
        ),
    )


TOPOLOGIES = {"fraud": _fraud, "reco": _reco}


def topology_for(feature_set: str) -> Topology:
    try:
        return TOPOLOGIES[feature_set]()
    except KeyError:
        msg = f"no online topology for feature set {feature_set!r}; known: {', '.join(TOPOLOGIES)}"
        raise TopologyError(msg) from None
