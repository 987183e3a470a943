"""The online topology is derived from a feature set's definition: the shipped sets give the stages and internal
topics they always had, and a definition the engine cannot run is refused naming what is wrong."""

from __future__ import annotations

from datetime import timedelta

import pytest

from slipstream.features.base import Agg, Aggregate, Entity, FeatureSet, FeatureView, SourceSpec, Window
from slipstream.features.definitions import FRAUD, RECO, feature_sets
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.topics import TOPICS, TopicCatalog
from slipstream.streams.engine.exceptions import TopologyError
from slipstream.streams.engine.topology import check_fields, derive, engine_topics, required_fields, topology_for


def _shape(name: str) -> list[tuple[object, ...]]:
    t = topology_for(name)
    return [
        (s.name, s.inputs, s.partition_key, tuple(v.name for v in s.views), s.forward_topic, s.forward_key,
         s.changelog_topic)
        for s in t.stages
    ]  # fmt: skip


def test_fraud_topology() -> None:
    assert _shape("fraud") == [
        ("customer", ("transactions", "labels"), "customer_id", ("customer_spending",), "engine.fraud.by-terminal",
         "terminal_id", "engine.fraud.customer.changelog"),
        ("terminal", ("engine.fraud.by-terminal",), "terminal_id", ("terminal_risk",), None, None,
         "engine.fraud.terminal.changelog"),
    ]  # fmt: skip


def test_reco_topology() -> None:
    assert _shape("reco") == [
        ("user", ("interactions",), "user_id", ("user_activity", "user_category_affinity", "user_item_recency"),
         "engine.reco.by-item", "item_id", "engine.reco.user.changelog"),
        ("item", ("engine.reco.by-item",), "item_id", ("item_popularity",), None, None, "engine.reco.item.changelog"),
    ]  # fmt: skip


def test_internal_topics() -> None:
    specs = {s.name: s for s in engine_topics([FRAUD, RECO])}
    assert set(specs) == {
        "engine.fraud.by-terminal",
        "engine.fraud.customer.changelog",
        "engine.fraud.terminal.changelog",
        "engine.reco.by-item",
        "engine.reco.user.changelog",
        "engine.reco.item.changelog",
    }
    assert specs["engine.fraud.by-terminal"].key_field == "terminal_id"
    assert specs["engine.fraud.customer.changelog"].cleanup_policy == "compact"
    assert all(s.value_schema is None for s in specs.values())
    catalog = TopicCatalog("p.", TOPICS).with_specs(specs.values())
    assert catalog.name("engine.reco.by-item") == "p.engine.reco.by-item"
    assert catalog.with_specs(specs.values()) == catalog  # adding the same declarations again changes nothing


def test_registry_finds_every_module() -> None:
    assert dict(feature_sets()) == {"fraud": FRAUD, "reco": RECO}
    assert topology_for(FRAUD) == topology_for("fraud")


def test_unknown_set_is_named() -> None:
    with pytest.raises(TopologyError, match="no feature set 'nope'; known: fraud, reco"):
        topology_for("nope")


def test_a_first_stage_not_keyed_like_its_topics_is_refused() -> None:
    tx = SourceSpec("transactions", id_field="transaction_id", fields=("amount",))
    by_terminal = FeatureView(
        "shop", Entity("shop", ("terminal_id",), ("int64",)), (tx,),
        (Aggregate("N", "transactions", Agg.COUNT, Window(timedelta(days=1))),),
    )  # fmt: skip
    bad = FeatureSet("bad", "transactions", (), (by_terminal,))
    with pytest.raises(
        TopologyError, match="topic 'transactions' is keyed by 'customer_id'.*partitioned by 'terminal_id'"
    ):
        derive(bad)


def test_an_undeclared_topic_is_refused() -> None:
    src = SourceSpec("clicks", id_field="click_id")
    view = FeatureView(
        "u", Entity("u", ("user_id",), ("int64",)), (src,), (Aggregate("N", "clicks", Agg.COUNT, Window(timedelta(1))),)
    )
    with pytest.raises(TopologyError, match="reads topic 'clicks', which is not declared"):
        derive(FeatureSet("clicks", "clicks", (), (view,)))


def test_fields_the_engine_needs_of_each_topic() -> None:
    fraud = topology_for("fraud")
    assert required_fields(fraud, "labels") == {
        "terminal_id",
        "transaction_id",
        "tx_event_time",
        "event_time",
        "is_fraud",
    }  # fmt: skip (a label reaches the terminal stage by its terminal; its customer is only its Kafka key)
    contracts = Contracts.default()
    for topology in (fraud, topology_for("reco")):
        for topic in topology.stages[0].inputs:
            check_fields(topology, topic, (f["name"] for f in contracts.serde(topic).schema.raw["fields"]))
    with pytest.raises(TopologyError, match=r"needs fields \['terminal_id'\] of topic 'labels'"):
        check_fields(fraud, "labels", required_fields(fraud, "labels") - {"terminal_id"})
