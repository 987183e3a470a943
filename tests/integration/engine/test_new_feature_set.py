"""A feature set that is neither fraud nor reco, declared here and nowhere else, runs through the online engine (real
Kafka and Redis) and the offline engine with equal results: one definition is all it takes.

Its first stage reads only transactions (no labels), its views use aggregations the shipped sets do not (max, min,
distinct count, time since last, sum), and a derived ratio spans two stages. The online engine's topology, internal
topics, Redis layout and Feast objects are all derived from the definition below.
"""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import redis

from slipstream.features.base import (
    Agg,
    Aggregate,
    Entity,
    FeatureSet,
    FeatureView,
    Ratio,
    RequestFeature,
    SourceSpec,
    Window,
)
from slipstream.features.feast_repo import FeastRepoConfig, feast_objects, view_layouts
from slipstream.features.offline import compute_offline, latest_view_rows
from slipstream.features.online_store import RedisFeatureReader
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.transport import EventProducer, TopicAdmin
from slipstream.streams.engine.app import EngineJob, run_threads
from slipstream.streams.engine.runner import EngineSettings
from slipstream.streams.engine.topology import derive
from slipstream.streams.publish import frame_records
from slipstream.streams.simulate.fraud import FraudSimConfig, simulate_transactions, to_transaction_events
from tests.conftest import Services
from tests.integration.engine.test_engine_on_kafka import feature_log

pytestmark = pytest.mark.integration

DAY = timedelta(days=1)
TX = SourceSpec("transactions", time_field="event_time", id_field="transaction_id", fields=("amount", "terminal_id"))
CARD = Entity("card", ("customer_id",), ("int64",))
SHOP = Entity("shop", ("terminal_id",), ("int64",))
VELOCITY = FeatureSet(
    name="velocity",
    trigger="transactions",
    request=(RequestFeature("AMOUNT", "field", "amount"), RequestFeature("NIGHT", "night")),
    views=(
        FeatureView(
            "card_velocity",
            CARD,
            (TX,),
            (
                Aggregate("CARD_MAX_AMOUNT_3D", "transactions", Agg.MAX, Window(3 * DAY), "amount"),
                Aggregate("CARD_MIN_AMOUNT_1D", "transactions", Agg.MIN, Window(DAY), "amount"),
                Aggregate("CARD_SHOPS_7D", "transactions", Agg.DISTINCT_COUNT, Window(7 * DAY), "terminal_id"),
                Aggregate("CARD_SECONDS_SINCE_LAST", "transactions", Agg.TIME_SINCE_LAST, Window(30 * DAY), default=-1),
            ),
        ),
        FeatureView(
            "shop_turnover",
            SHOP,
            (TX,),
            (
                Aggregate("SHOP_SUM_AMOUNT_1D", "transactions", Agg.SUM, Window(DAY), "amount"),
                Aggregate("SHOP_NB_TX_6H", "transactions", Agg.COUNT, Window(DAY / 4)),
                Aggregate("SHOP_NB_TX_2D_AGO", "transactions", Agg.COUNT, Window(DAY, delay=2 * DAY)),
            ),
        ),
    ),
    derived=(Ratio("CARD_MAX_SHARE_OF_SHOP_1D", "CARD_MAX_AMOUNT_3D", "SHOP_SUM_AMOUNT_1D"),),
)


def test_the_topology_and_topics_derive_from_the_definition(tmp_path: Path) -> None:
    topology = derive(VELOCITY)
    assert [(s.name, s.inputs, s.partition_key, s.forward_topic) for s in topology.stages] == [
        ("card", ("transactions",), "customer_id", "engine.velocity.by-shop"),
        ("shop", ("engine.velocity.by-shop",), "terminal_id", None),
    ]
    assert [t.name for t in topology.topics()] == [
        "engine.velocity.card.changelog",
        "engine.velocity.by-shop",
        "engine.velocity.shop.changelog",
    ]
    config = FeastRepoConfig(
        project="velocity_test", repo_dir=tmp_path, offline_dir=tmp_path, redis_url="redis://127.0.0.1:6379/0"
    )
    objects = feast_objects([VELOCITY], config)
    assert set(objects.feature_views) == {"card_velocity", "shop_turnover"}
    assert set(objects.feature_services) == {"velocity"}


def test_a_new_feature_set_online_equals_offline(services: Services, contracts: Contracts) -> None:
    config = FraudSimConfig(n_customers=200, n_terminals=100, nb_days=14)
    events = to_transaction_events(simulate_transactions(config))
    assert len(events) > 1500
    with EventProducer(services.bootstrap_servers, contracts, linger_ms=5) as producer:
        for record in frame_records(events):
            producer.send("transactions", record)
    project = f"t{uuid.uuid4().hex[:8]}"
    settings = EngineSettings(services.bootstrap_servers, services.redis_url, project=project)
    stats = run_threads(EngineJob(settings, contracts.catalog.prefix, VELOCITY), threading.Event(), until_idle_s=3)
    assert stats["card"].applied == len(events) and stats["card"].dead_lettered == 0
    assert stats["shop"].applied == len(events)
    existing = TopicAdmin(services.bootstrap_servers).existing()
    assert {contracts.catalog.prefix + t.name for t in derive(VELOCITY).topics()} <= set(existing)  # made by the engine

    online = feature_log(services, contracts, len(events))
    offline_result = compute_offline(VELOCITY, {"transactions": events})
    offline = offline_result.vectors
    assert len(online) == len(offline) == len(events)
    names = list(VELOCITY.feature_names)
    got = np.array([[online[str(i)][n] for n in names] for i in offline["transaction_id"]])
    want = offline[names].to_numpy(dtype=float)
    assert np.isfinite(want).all()
    assert np.abs(got - want).max() <= 1e-9
    assert (want[:, names.index("CARD_SECONDS_SINCE_LAST")] == -1).any()  # first transactions of a card
    assert (want[:, names.index("SHOP_NB_TX_2D_AGO")] > 0).any()

    # The online store holds, per shop, the offline engine's newest row, in the layout derived from the definition.
    layout = view_layouts([VELOCITY], project)["shop_turnover"]
    reader = RedisFeatureReader(redis.Redis.from_url(services.redis_url), [layout])
    newest = latest_view_rows(offline_result.view_rows)["shop_turnover"]
    assert len(newest) == events["terminal_id"].nunique()
    for row in newest.head(20).to_dict("records"):
        stored = reader.read({"terminal_id": int(row["terminal_id"])})
        assert stored is not None
        for name, value in stored.values.items():
            assert value == pytest.approx(row[name], abs=1e-9)
