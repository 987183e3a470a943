"""``slipstream.features.feast_repo`` builds the right Feast objects and ``feature_store.yaml`` from our definitions
(no Redis)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from feast import FeatureView, PushSource, ValueType
from feast.infra.offline_stores.file_source import FileSource
from feast.types import Float64, Int32, Int64

from slipstream.features.base import Agg, Aggregate, Entity, FeatureSet, SourceSpec, Window
from slipstream.features.base import FeatureView as OurView
from slipstream.features.definitions import FRAUD, RECO
from slipstream.features.definitions.reco import USER_CATEGORY_VIEW
from slipstream.features.exceptions import DefinitionError
from slipstream.features.feast_layout import ViewLayout
from slipstream.features.feast_repo import (
    FeastObjects,
    FeastRepoConfig,
    feast_objects,
    push_source_name,
    redis_connection_string,
    view_layouts,
    write_repo,
)

URL = "redis://127.0.0.1:6390/2"
ALL_VIEWS = ["customer_spending", "terminal_risk", "user_activity", "user_category_affinity"]
ALL_VIEWS += ["user_item_recency", "item_popularity"]


def config(tmp_path: Path, **overrides: object) -> FeastRepoConfig:
    kwargs: dict[str, object] = {"repo_dir": tmp_path / "repo", "offline_dir": tmp_path / "offline", "redis_url": URL}
    return FeastRepoConfig(**(kwargs | overrides))  # type: ignore[arg-type]


@pytest.fixture
def objects(tmp_path: Path) -> FeastObjects:
    return feast_objects([FRAUD, RECO], config(tmp_path))


def test_views_schema_ttl_and_sources(objects: FeastObjects, tmp_path: Path) -> None:
    assert list(objects.feature_views) == ALL_VIEWS
    customer = objects.feature_views["customer_spending"]
    assert isinstance(customer, FeatureView)
    assert [f.name for f in customer.features] == list(FRAUD.view("customer_spending").feature_names)
    assert len(customer.features) == 6
    assert {f.dtype for f in customer.features} == {Float64}
    assert [(f.name, f.dtype) for f in customer.entity_columns] == [("customer_id", Int64)]
    assert customer.entities == ["customer"]
    assert customer.ttl == timedelta(days=90)
    assert customer.online is True
    assert customer.description == "Card spending windows."
    assert customer.tags == {"entity": "customer", "sources": "transactions", "owner": "slipstream"}
    nb_tx = customer.features[0]
    assert nb_tx.description == "count of events from transactions in (t - 1d, t]"
    assert nb_tx.tags == {
        "kind": "aggregate",
        "agg": "count",
        "source": "transactions",
        "window": "1d",
        "delay": "0d",
        "default": "0.0",
    }
    risk = objects.feature_views["terminal_risk"].features[2]
    assert (risk.name, risk.tags["kind"], risk.tags["numerator"]) == (
        "TERMINAL_ID_RISK_1DAY_WINDOW",
        "ratio",
        "TERMINAL_ID_NB_FRAUD_1DAY_WINDOW",
    )
    assert objects.feature_views["item_popularity"].features[0].tags["where"] == "action==VIEW"
    fraud_30d = objects.feature_views["terminal_risk"].features[7]
    assert fraud_30d.description == "sum of is_fraud from labels in (t - 37d, t - 7d]"

    batch = objects.batch_sources["customer_spending"]
    assert isinstance(batch, FileSource)
    assert batch.path == str(tmp_path / "offline" / "customer_spending.parquet")
    assert (batch.timestamp_field, batch.created_timestamp_column) == ("event_timestamp", "created")
    assert customer.batch_source == batch


def test_push_sources_wrap_the_batch_sources(objects: FeastObjects) -> None:
    assert list(objects.push_sources) == ALL_VIEWS
    for view, push in objects.push_sources.items():
        assert isinstance(push, PushSource)
        assert push.name == push_source_name(view) == f"{view}_push"
        assert push.batch_source == objects.batch_sources[view]
        assert objects.feature_views[view].stream_source == push


def test_entities_one_join_key_each_composite_keys_reuse_them(objects: FeastObjects) -> None:
    entities = {name: (e.join_key, e.value_type) for name, e in objects.entities.items()}
    assert entities == {
        "customer": ("customer_id", ValueType.INT64),
        "terminal": ("terminal_id", ValueType.INT64),
        "user": ("user_id", ValueType.INT64),
        "item": ("item_id", ValueType.INT64),
        "category_id": ("category_id", ValueType.INT32),
    }
    affinity = objects.feature_views["user_category_affinity"]
    assert affinity.entities == ["user", "category_id"]
    assert [(f.name, f.dtype) for f in affinity.entity_columns] == [("user_id", Int64), ("category_id", Int32)]
    assert objects.feature_views["user_item_recency"].entities == ["user", "item"]


def test_feature_services_and_apply_order(objects: FeastObjects) -> None:
    services = {name: [p.name for p in s.feature_view_projections] for name, s in objects.feature_services.items()}
    assert services == {"fraud": ALL_VIEWS[:2], "reco": ALL_VIEWS[2:]}
    everything = objects.all()
    assert len(everything) == 5 + 6 + 6 + 6 + 2
    assert everything[-2:] == list(objects.feature_services.values())


def test_shared_views_are_deduplicated_and_conflicts_rejected(tmp_path: Path) -> None:
    twice = FeatureSet("reco_lite", "interactions", (), (USER_CATEGORY_VIEW,))
    objects = feast_objects([RECO, twice], config(tmp_path))
    assert list(objects.feature_views) == ALL_VIEWS[2:]
    assert [p.name for p in objects.feature_services["reco_lite"].feature_view_projections] == [
        "user_category_affinity"
    ]

    changed = dataclasses.replace(USER_CATEGORY_VIEW, ttl=timedelta(days=1))
    with pytest.raises(DefinitionError, match="declares view 'user_category_affinity' unlike another set does"):
        feast_objects([RECO, FeatureSet("other", "interactions", (), (changed,))], config(tmp_path))
    with pytest.raises(DefinitionError, match="feature set 'reco' is given twice"):
        feast_objects([RECO, RECO], config(tmp_path))

    source = SourceSpec("interactions")
    clash = Entity("shopper", ("user_id",), ("string",))
    view = OurView("shoppers", clash, (source,), (Aggregate("N", "interactions", Agg.COUNT, Window(timedelta(1))),))
    with pytest.raises(DefinitionError, match="join key 'user_id' is 'string' in entity 'shopper' but 'int64'"):
        feast_objects([RECO, FeatureSet("s", "interactions", (), (view,))], config(tmp_path))


def test_view_layouts_equal_feast_views(objects: FeastObjects) -> None:
    layouts = view_layouts([FRAUD, RECO], "slipstream")
    assert list(layouts) == ALL_VIEWS
    sample = {"customer_id": 1, "terminal_id": 2, "user_id": 3, "item_id": 4, "category_id": 5}
    for name, ours in layouts.items():
        feast = ViewLayout.from_feature_view("slipstream", objects.feature_views[name])
        assert (ours.view, ours.features, ours.join_keys, ours.fields) == (
            feast.view,
            feast.features,
            feast.join_keys,
            feast.fields,
        )
        keys = {k: sample[k] for k, _ in ours.join_keys}
        assert ours.key(keys) == feast.key(keys)


def test_feature_store_yaml(tmp_path: Path) -> None:
    cfg = config(tmp_path, project="fraud_dev", key_ttl_seconds=3600)
    repo = write_repo(cfg, [FRAUD])
    assert repo == tmp_path / "repo"
    assert (repo / "feature_store.yaml").read_text() == (
        "project: fraud_dev\n"
        f'registry: "{tmp_path}/repo/registry.db"\n'
        "provider: local\n"
        "online_store:\n"
        "  type: redis\n"
        '  connection_string: "127.0.0.1:6390,db=2,socket_connect_timeout=5"\n'
        "  key_ttl_seconds: 3600\n"
        "offline_store:\n"
        "  type: file\n"
        "entity_key_serialization_version: 3\n"
    )
    assert sorted(p.name for p in repo.iterdir()) == ["feature_store.yaml"]


def test_placeholders_are_typed_and_never_overwrite(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    offline = tmp_path / "offline"
    offline.mkdir()
    existing = pa.table({"customer_id": pa.array([7], pa.int64())})
    pq.write_table(existing, offline / "customer_spending.parquet")
    write_repo(cfg, [FRAUD, RECO])
    assert sorted(p.name for p in offline.iterdir()) == sorted(f"{v}.parquet" for v in ALL_VIEWS)
    assert pq.read_table(offline / "customer_spending.parquet").equals(existing)

    table = pq.read_table(offline / "user_category_affinity.parquet")
    ts = pa.timestamp("us", tz="UTC")
    assert table.num_rows == 0
    assert table.schema.names == ["user_id", "category_id", "event_timestamp", "created", *RECO.views[1].feature_names]
    assert table.schema.types == [pa.int64(), pa.int32(), ts, ts, pa.float64(), pa.float64(), pa.float64()]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6390/2", "127.0.0.1:6390,db=2,socket_connect_timeout=5"),
        ("redis://redis", "redis:6379,db=0,socket_connect_timeout=5"),
        ("rediss://cache.example:6380/0", "cache.example:6380,db=0,ssl=true,socket_connect_timeout=5,socket_timeout=5"),
        (
            "redis://app:s%40cret@localhost:7000/1",
            'localhost:7000,db=1,username="app",password="s@cret",socket_connect_timeout=5',
        ),
        ("redis://:123@localhost/3", 'localhost:6379,db=3,password="123",socket_connect_timeout=5'),
        (
            "rediss://u:p@h:6380/0?ssl_ca_certs=/etc/ca.crt&ssl_certfile=/c.crt&ssl_keyfile=/c.key",
            'h:6380,db=0,ssl=true,username="u",password="p",ssl_ca_certs="/etc/ca.crt",ssl_certfile="/c.crt",'
            'ssl_keyfile="/c.key",socket_connect_timeout=5,socket_timeout=5',
        ),
    ],
)
def test_redis_connection_string(url: str, expected: str) -> None:
    assert redis_connection_string(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://localhost:6379/0", "redis_url 'http://localhost:6379/0' must look like redis://host:port/db"),
        ("redis://localhost:6379/x", "redis_url 'redis://localhost:6379/x' must look like"),
        ("redis://localhost:99999/0", "redis_url 'redis://localhost:99999/0' is not a valid URL"),
        ("redis://localhost/0?timeout=1", "query parameters other than ssl_ca_certs"),
        ("redis://localhost/0?ssl_ca_certs=/ca.crt", "has ssl_ca_certs but is not TLS: use rediss://"),
        ("redis://:a,b@localhost/0", r"redis_url 'redis://:\*\*\*@localhost/0': a password with a comma"),
    ],
)
def test_bad_redis_urls(url: str, message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        redis_connection_string(url)


@pytest.mark.parametrize("project", ["my-project", "_hidden", "", "a b", "fraud.dev", "café"])
def test_bad_project_names(tmp_path: Path, project: str) -> None:
    with pytest.raises(DefinitionError, match=f"Feast project name {project!r} must be letters, digits"):
        config(tmp_path, project=project)


def test_config_defaults_and_ttl(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    assert (cfg.project, cfg.key_ttl_seconds, cfg.connection_string) == (
        "slipstream",
        None,
        "127.0.0.1:6390,db=2,socket_connect_timeout=5",
    )
    assert cfg.offline_path("v") == tmp_path / "offline" / "v.parquet"
    for bad in (0, -5, True):
        with pytest.raises(
            DefinitionError, match=f"key_ttl_seconds must be a positive number of seconds or None, got {bad!r}"
        ):
            config(tmp_path, key_ttl_seconds=bad)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.project = "other"  # type: ignore[misc]
