"""One contract, two online stores: the same checks on the suite's standalone Redis and on a Redis Cluster.

Writer (stale, equal and newer rows, state blobs, hundreds of entities over every slot), ``RedisFeatureReader``, the
scorer's state reads (``RedisStateStore``), the reco reader, Feast's own SDK read (``feature_store.yaml`` generated
from the URL) and ``project_key_count`` (count, delete). Each test writes under a Feast project of its own.
Cluster only: a slot moved behind the clients' backs (MOVED) and a restarted master (lost sockets and scripts).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from slipstream.features.base import FeatureView
from slipstream.features.definitions import FRAUD, RECO
from slipstream.features.definitions.fraud import CUSTOMER_VIEW
from slipstream.features.feast_repo import FeastRepoConfig, apply_repo, view_layouts
from slipstream.features.online_store import (
    EntityStateBlob,
    FeatureRow,
    RedisFeatureReader,
    RedisFeatureWriter,
    project_key_count,
)
from slipstream.features.redis_client import is_cluster, redis_client
from slipstream.infra.redis_cluster_local import LocalRedisCluster
from slipstream.serving.online_state import RedisStateStore
from slipstream.serving.reco import RecoCandidate, RecoRowReader
from tests.conftest import Services

pytestmark = pytest.mark.integration

T0 = datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)
VIEW = CUSTOMER_VIEW.name
NAMES = CUSTOMER_VIEW.feature_names


@pytest.fixture(params=["standalone", "cluster"])
def url(request: pytest.FixtureRequest) -> str:
    if request.param == "standalone":
        services: Services = request.getfixturevalue("services")
        return services.redis_url
    cluster: LocalRedisCluster = request.getfixturevalue("redis_cluster")
    return cluster.config.redis_url


@pytest.fixture
def project(url: str) -> Iterator[str]:
    name = f"rc{uuid.uuid4().hex[:10]}"
    yield name
    project_key_count(url, name, delete=True)


def _row(customer: int, when: datetime, value: float) -> FeatureRow:
    return FeatureRow(VIEW, {"customer_id": customer}, {n: value for n in NAMES}, when)


def test_writer_reader_and_scorer_state(url: str, project: str) -> None:
    client = redis_client(url)
    assert is_cluster(client) == url.startswith("redis+cluster://")
    layouts = view_layouts([FRAUD], project)
    writer = RedisFeatureWriter(client, layouts.values())
    reader = RedisFeatureReader(client, [layouts[VIEW]])
    entities = range(600)  # spread over every master of a cluster
    rows = [_row(c, T0, float(c)) for c in entities]
    states = [EntityStateBlob(VIEW, {"customer_id": c}, b"state-%d" % c) for c in entities]
    assert writer.write_batch(rows, states).applied == 600

    hour = timedelta(hours=1)
    report = writer.write_batch([_row(1, T0 - hour, -1.0), _row(2, T0, 2.0), _row(3, T0 + hour, 33.0)])
    assert (report.applied, report.stale) == (2, 1)

    got = reader.read_many([{"customer_id": c} for c in entities])
    assert all(g is not None for g in got)
    by_customer = {c: g.values[NAMES[0]] for c, g in zip(entities, got, strict=True) if g is not None}
    assert by_customer[1] == 1.0 and by_customer[2] == 2.0 and by_customer[3] == 33.0
    assert all(by_customer[c] == float(c) for c in entities if c not in (1, 2, 3))
    assert reader.read({"customer_id": 10_000}) is None

    store = RedisStateStore.from_url(url, layouts.values(), timeout_s=0.5)
    keys = [(VIEW, {"customer_id": c}) for c in [*entities, 10_000]]
    assert store.read_states(keys) == [b"state-%d" % c for c in entities] + [None]
    assert store.ping()
    store.close()
    client.close()


def test_feast_sdk_reads_what_we_wrote(url: str, project: str, tmp_path: Path) -> None:
    config = FeastRepoConfig(project=project, repo_dir=tmp_path / "repo", offline_dir=tmp_path / "off", redis_url=url)
    feast = apply_repo(config, [FRAUD])
    text = (tmp_path / "repo" / "feature_store.yaml").read_text()
    assert ("redis_type: redis_cluster" in text) == url.startswith("redis+cluster://")
    writer = RedisFeatureWriter.from_url(url, view_layouts([FRAUD], project).values())
    assert writer.write_batch([_row(c, T0, 10.0 + c) for c in range(50)]).applied == 50
    got = feast.get_online_features(
        features=[f"{VIEW}:{n}" for n in NAMES], entity_rows=[{"customer_id": c} for c in (0, 7, 49, 999)]
    ).to_dict()
    assert got[NAMES[0]] == [10.0, 17.0, 59.0, None]


def test_reco_reader(url: str, project: str) -> None:
    layouts = view_layouts([RECO], project)
    user, category, user_item, item = RECO.views

    def row(view: FeatureView, keys: dict[str, int], value: float) -> FeatureRow:
        return FeatureRow(view.name, keys, dict.fromkeys(view.feature_names, value), T0)

    rows = [row(user, {"user_id": 7}, 1.0)]
    rows += [row(category, {"user_id": 7, "category_id": c}, 2.0) for c in (1, 2)]
    rows += [row(item, {"item_id": i}, float(i)) for i in range(40)]
    rows += [row(user_item, {"user_id": 7, "item_id": 3}, 5.0)]
    assert RedisFeatureWriter.from_url(url, layouts.values()).write_batch(rows).applied == len(rows)
    reader = RecoRowReader.from_url(url, layouts, timeout_s=0.5)
    candidates = [RecoCandidate(i, 1 + i % 3, 0.0) for i in range(40)]
    got = reader.read_rows(7, candidates)
    assert got.user is not None and set(got.user.values.values()) == {1.0}
    assert {c: r is not None for c, r in got.categories.items()} == {2: True, 3: False, 1: True}
    assert [r is not None for r in got.user_items] == [i == 3 for i in range(40)]
    assert [r.values[next(iter(r.values))] if r else None for r in got.items] == [float(i) for i in range(40)]
    reader.close()


def test_project_key_count_counts_and_deletes(url: str, project: str) -> None:
    writer = RedisFeatureWriter.from_url(url, view_layouts([FRAUD], project).values())
    writer.write_batch([_row(c, T0, 1.0) for c in range(300)])
    assert project_key_count(url, project) == 300
    assert project_key_count(url, f"x{project}") == 0
    assert project_key_count(url, project, delete=True) == 300
    assert project_key_count(url, project) == 0


# ------------------------------------------------------------------------------------------- cluster only
def _node_ids(client: redis.Redis[bytes]) -> dict[int, str]:
    """port -> node id, from CLUSTER NODES (redis-py parses it: ``{"host:port": {"node_id": ...}}``)."""
    nodes: dict[str, dict[str, Any]] = client.execute_command("CLUSTER NODES")
    return {int(address.rsplit(":", 1)[1]): str(node["node_id"]) for address, node in nodes.items()}


def _entity_in_an_empty_slot(client: Any, key: Callable[[dict[str, int]], bytes]) -> tuple[int, int, int]:
    """A customer id whose slot holds no key yet, the slot and the port of its master."""
    for customer in range(1000, 2000):
        slot = key_slot(key({"customer_id": customer}))
        node = client.nodes_manager.get_node_from_slot(slot)
        if not node.redis_connection.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot):
            return customer, slot, int(node.port)
    msg = "no empty slot among 1,000 customers"
    raise AssertionError(msg)


def _move_slot(ports: tuple[int, ...], slot: int, to_port: int) -> None:
    """Assign an (empty) slot to another master on every master: what a finished resharding leaves."""
    clients = [redis.Redis(port=p) for p in ports]
    target = _node_ids(clients[0])[to_port]
    for client in sorted(clients, key=lambda c: c.connection_pool.connection_kwargs["port"] != to_port):
        client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target)
        client.close()


def test_cluster_moved_slot_and_restarted_master(redis_cluster: LocalRedisCluster) -> None:
    url = redis_cluster.config.redis_url
    project = f"rc{uuid.uuid4().hex[:10]}"
    layouts = view_layouts([FRAUD], project)
    writer = RedisFeatureWriter.from_url(url, layouts.values())
    store = RedisStateStore.from_url(url, layouts.values(), timeout_s=0.5)
    client = redis_client(url)
    entities = list(range(200))
    states = [EntityStateBlob(VIEW, {"customer_id": c}, b"s%d" % c) for c in entities]
    keys = [(VIEW, {"customer_id": c}) for c in entities]
    assert writer.write_batch([_row(c, T0, 1.0) for c in entities], states).applied == 200
    assert store.read_states(keys) == [b"s%d" % c for c in entities]
    try:
        # MOVED: customer 1000's (empty) slot goes to another master behind the writer's and the store's backs.
        moved, slot, owner = _entity_in_an_empty_slot(client, layouts[VIEW].key)
        other = next(p for p in redis_cluster.ports if p != owner)
        _move_slot(redis_cluster.ports, slot, other)
        blob = EntityStateBlob(VIEW, {"customer_id": moved}, b"m")
        assert writer.write_batch([_row(moved, T0, 5.0)], [blob]).applied == 1
        assert store.read_states([(VIEW, {"customer_id": moved})]) == [b"m"]
        project_key_count(url, project, delete=True)
        _move_slot(redis_cluster.ports, slot, int(owner))

        # A restarted master: pooled sockets to it are dead, its scripts and keys gone; writes and reads go on.
        port = redis_cluster.ports[1]
        redis_cluster.stop_node(port)
        redis_cluster.start_node(port)
        report = writer.write_batch([_row(c, T0 + timedelta(seconds=1), 2.0) for c in entities], states)
        assert (report.applied, report.stale) == (200, 0)
        assert store.read_states(keys) == [b"s%d" % c for c in entities]
    finally:
        project_key_count(url, project, delete=True)
        store.close()
        client.close()
