"""Rows written by ``RedisFeatureWriter`` are what Feast's own ``get_online_features`` returns, against real Redis.

A real Feast 0.67 repository (local provider, file offline store, Redis online store) is applied in a temporary
directory; a redis-server of our own runs on a free port. If it cannot start, the tests fail: they never skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import redis
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64

from slipstream.features.feast_layout import OnlineFeatures, ViewLayout
from slipstream.features.feast_repo import redis_connection_string
from slipstream.features.online_store import FeatureRow, OnlineStoreError, RedisFeatureReader, RedisFeatureWriter
from tests.conftest import Services
from tests.integration.features.conftest import redis_db_url

pytestmark = pytest.mark.integration

PROJECT = "slipstream_it"
VIEW = "customer_features"
FEATURES = ["amount_sum_1h", "amount_max_1h", "txn_count_1h", "distinct_merchants_24h"]
REFS = [f"{VIEW}:{name}" for name in FEATURES]
T0 = datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)


@dataclass(frozen=True)
class RedisServer:
    url: str


@pytest.fixture(scope="session")
def redis_server(services: Services) -> RedisServer:
    return RedisServer(redis_db_url(services, 2))


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis[bytes]]:
    conn = redis.Redis.from_url(redis_server.url)
    conn.flushdb()
    yield conn
    conn.close()


def _customer_view(parquet: Path) -> tuple[Entity, FeatureView]:
    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.INT64)
    view = FeatureView(
        name=VIEW,
        entities=[customer],
        ttl=timedelta(days=1),
        schema=[
            Field(name="customer_id", dtype=Int64),
            Field(name="amount_sum_1h", dtype=Float64),
            Field(name="amount_max_1h", dtype=Float64),
            Field(name="txn_count_1h", dtype=Int64),
            Field(name="distinct_merchants_24h", dtype=Int64),
        ],
        source=FileSource(path=str(parquet), timestamp_field="event_timestamp"),
        online=True,
    )
    return customer, view


@pytest.fixture(scope="module")
def feast_store(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    repo = tmp_path_factory.mktemp("feast_repo")
    (repo / "feature_store.yaml").write_text(
        f"project: {PROJECT}\n"
        f"registry: {repo / 'registry.db'}\n"
        "provider: local\n"
        "online_store:\n"
        "  type: redis\n"
        f'  connection_string: "{redis_connection_string(redis_server.url)}"\n'
        "offline_store:\n"
        "  type: file\n"
        "entity_key_serialization_version: 3\n"
    )
    parquet = repo / "customer_features.parquet"
    pd.DataFrame(
        {
            "customer_id": [1],
            "amount_sum_1h": [0.0],
            "amount_max_1h": [0.0],
            "txn_count_1h": [0],
            "distinct_merchants_24h": [0],
            "event_timestamp": [pd.Timestamp(T0)],
        }
    ).to_parquet(parquet)
    store = FeatureStore(repo_path=str(repo))
    store.apply(list(_customer_view(parquet)))
    return store


@pytest.fixture
def layout(feast_store: FeatureStore) -> ViewLayout:
    return ViewLayout.from_feature_view(PROJECT, feast_store.get_feature_view(VIEW))


def row(customer_id: int, event_time: datetime, amount: float, count: int) -> FeatureRow:
    values = {"amount_sum_1h": amount, "amount_max_1h": amount / 2, "txn_count_1h": count}
    return FeatureRow(VIEW, {"customer_id": customer_id}, {**values, "distinct_merchants_24h": count - 1}, event_time)


def feast_read(store: FeatureStore, *customer_ids: int) -> dict[str, list[object]]:
    rows = [{"customer_id": c} for c in customer_ids]
    result: dict[str, list[object]] = store.get_online_features(features=REFS, entity_rows=rows).to_dict()
    return result


def test_feast_get_online_features_returns_what_we_wrote(
    feast_store: FeatureStore, client: redis.Redis[bytes], layout: ViewLayout
) -> None:
    writer = RedisFeatureWriter(client, [layout])
    report = writer.write_batch([row(1, T0, 12.5, 3), row(2, T0 + timedelta(seconds=1), 80.25, 7)])
    assert (report.applied, report.stale, report.rejected) == (2, 0, ())

    assert feast_read(feast_store, 1, 2, 3) == {
        "customer_id": [1, 2, 3],
        "amount_sum_1h": [12.5, 80.25, None],
        "amount_max_1h": [6.25, 40.125, None],
        "txn_count_1h": [3, 7, None],
        "distinct_merchants_24h": [2, 6, None],
    }


@pytest.mark.parametrize("rows_per_call", [1, 2, 32])
def test_older_event_time_never_overwrites(
    feast_store: FeatureStore, client: redis.Redis[bytes], layout: ViewLayout, rows_per_call: int
) -> None:
    writer = RedisFeatureWriter(client, [layout], rows_per_call=rows_per_call)
    assert writer.write_batch([row(1, T0, 12.5, 3)]).applied == 1
    late = writer.write_batch([row(1, T0 - timedelta(microseconds=1), 99.0, 9)])
    assert (late.applied, late.stale) == (0, 1)
    assert feast_read(feast_store, 1)["amount_sum_1h"] == [12.5]

    # Within one batch the commands run in order, so the newest row wins whatever the order.
    batch = [row(5, T0 + timedelta(seconds=2), 2.0, 2), row(5, T0, 1.0, 1), row(5, T0 + timedelta(seconds=1), 3.0, 3)]
    assert (writer.write_batch(batch).applied, writer.write_batch(batch).stale) == (1, 2)
    assert feast_read(feast_store, 5)["amount_sum_1h"] == [2.0]


def test_equal_event_time_replays_are_idempotent(
    feast_store: FeatureStore, client: redis.Redis[bytes], layout: ViewLayout
) -> None:
    writer = RedisFeatureWriter(client, [layout])
    batch = [row(c, T0 + timedelta(milliseconds=c), 10.0 * c, c) for c in range(1, 51)]
    assert writer.write_batch(batch).applied == 50
    before = {key: client.hgetall(key) for key in client.scan_iter()}
    replay = writer.write_batch(batch)
    assert (replay.applied, replay.stale) == (50, 0)  # equal times overwrite ...
    assert {key: client.hgetall(key) for key in client.scan_iter()} == before  # ... with identical bytes
    assert feast_read(feast_store, 7)["amount_sum_1h"] == [70.0]


def test_reader_returns_what_feast_returns(
    feast_store: FeatureStore, client: redis.Redis[bytes], layout: ViewLayout, redis_server: RedisServer
) -> None:
    RedisFeatureWriter(client, [layout]).write_batch([row(1, T0, 12.5, 3), row(2, T0, 1.0, 1)])
    reader = RedisFeatureReader.from_url(redis_server.url, [layout])

    got = reader.read({"customer_id": 1})
    feast = feast_read(feast_store, 1)
    assert got == OnlineFeatures({name: feast[name][0] for name in FEATURES}, {VIEW: T0})
    assert reader.read({"customer_id": 404}) is None
    many = reader.read_many([{"customer_id": 2}, {"customer_id": 404}, {"customer_id": 1}])
    assert many == [reader.read({"customer_id": 2}), None, got]


def test_rows_feast_wrote_are_respected(
    feast_store: FeatureStore, client: redis.Redis[bytes], layout: ViewLayout
) -> None:
    newer = T0 + timedelta(hours=1)
    df = pd.DataFrame(
        {
            "customer_id": [1],
            "amount_sum_1h": [5.0],
            "amount_max_1h": [5.0],
            "txn_count_1h": [1],
            "distinct_merchants_24h": [1],
            "event_timestamp": [pd.Timestamp(newer)],
        }
    )
    feast_store.write_to_online_store(VIEW, df)
    report = RedisFeatureWriter(client, [layout]).write_batch([row(1, T0, 12.5, 3)])
    assert (report.applied, report.stale) == (0, 1)  # the script compares with Feast's own _ts field
    assert feast_read(feast_store, 1)["amount_sum_1h"] == [5.0]


def test_ttl_like_feast_and_script_reload(client: redis.Redis[bytes], layout: ViewLayout) -> None:
    writer = RedisFeatureWriter(client, [layout], key_ttl_seconds=3600)
    writer.write_batch([row(1, T0, 1.0, 1)])
    key = layout.key({"customer_id": 1})
    assert 3500 < client.ttl(key) <= 3600
    client.expire(key, 100)
    writer.write_batch([row(1, T0 - timedelta(seconds=1), 1.0, 1)])
    assert client.ttl(key) <= 100  # a stale row is not written, so it does not refresh the TTL either

    client.script_flush()  # a restarted Redis forgets scripts: the writer loads it again and resends
    assert writer.write_batch([row(1, T0 + timedelta(seconds=1), 2.0, 2)]).applied == 1


def test_a_connection_redis_dropped_is_replaced_and_the_batch_written(
    client: redis.Redis[bytes], layout: ViewLayout
) -> None:
    """A Redis restart (or a timeout) drops the writer's pooled connection: the batch goes again on a new one."""
    writer = RedisFeatureWriter(client, [layout])
    assert writer.write_batch([row(1, T0, 1.0, 1)]).applied == 1  # the pool now holds a connection
    killer = redis.Redis(**client.connection_pool.connection_kwargs)
    assert killer.client_kill_filter(_type="normal", skipme=True) >= 1  # every other client, the writer's included
    report = writer.write_batch([row(1, T0 + timedelta(seconds=1), 2.0, 2), row(2, T0, 3.0, 3)])
    assert (report.applied, report.stale) == (2, 0)
    assert client.hget(layout.key({"customer_id": 2}), layout.timestamp_field) is not None


def test_bad_rows_are_reported_not_written(client: redis.Redis[bytes], layout: ViewLayout) -> None:
    writer = RedisFeatureWriter(client, [layout])
    naive = datetime(2024, 5, 1)  # noqa: DTZ001 - the point of the test
    bad = [
        FeatureRow("unknown_view", {"customer_id": 1}, {}, T0),
        FeatureRow(VIEW, {"customer_id": "1"}, row(1, T0, 1.0, 1).values, T0),
        FeatureRow(VIEW, {"customer_id": 1}, {**row(1, T0, 1.0, 1).values, "txn_count_1h": 1.5}, T0),
        FeatureRow(VIEW, {"customer_id": 1}, row(1, T0, 1.0, 1).values, naive),
    ]
    report = writer.write_batch([row(9, T0, 1.0, 1), *bad])
    assert (report.applied, report.stale) == (1, 0)
    assert [r.index for r in report.rejected] == [1, 2, 3, 4]
    assert "no layout for view 'unknown_view'" in report.rejected[0].reason
    assert "'1' (str) is not a valid Int64 entity value" in report.rejected[1].reason
    assert "1.5 (float) is not a valid Int64 feature value" in report.rejected[2].reason
    assert "naive datetime.datetime(2024, 5, 1, 0, 0)" in report.rejected[3].reason
    assert client.dbsize() == 1

    with pytest.raises(OnlineStoreError, match="decode_responses=False"):
        RedisFeatureWriter(
            redis.Redis(port=client.connection_pool.connection_kwargs["port"], decode_responses=True), []
        )


def test_times_before_1970_and_a_corrupt_timestamp(client: redis.Redis[bytes], layout: ViewLayout) -> None:
    writer = RedisFeatureWriter(client, [layout])
    old = datetime(1960, 1, 1, 0, 0, 0, 5, tzinfo=UTC)  # a negative Timestamp.seconds: a 10-byte varint in Lua
    assert writer.write_batch([row(1, old, 1.0, 1)]).applied == 1
    late = writer.write_batch([row(1, old - timedelta(microseconds=1), 2.0, 2), row(1, old, 3.0, 3)])
    assert (late.applied, late.stale) == (1, 1)
    got = RedisFeatureReader(client, [layout]).read({"customer_id": 1})
    assert got is not None
    assert (got.values["amount_sum_1h"], got.event_times[VIEW]) == (3.0, old)

    client.hset(layout.key({"customer_id": 1}), layout.timestamp_field, b"\x08\xff")
    with pytest.raises(OnlineStoreError, match="corrupt _ts:customer_features field"):
        writer.write_batch([row(1, T0, 1.0, 1)])
