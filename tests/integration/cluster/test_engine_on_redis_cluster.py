"""The fraud feature engine writing to a Redis Cluster: features and window states on every master, read back by the
scorer's state store, by our reader and by Feast's own SDK, equal to the reference features."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest
import redis

from slipstream.features.definitions.fraud import CUSTOMER_VIEW, FRAUD, TERMINAL_VIEW
from slipstream.features.feast_repo import FeastRepoConfig, apply_repo, view_layouts
from slipstream.features.online_store import RedisFeatureReader, project_key_count
from slipstream.infra.redis_cluster_local import LocalRedisCluster
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.transport import EventProducer
from slipstream.serving.online_state import RedisStateStore
from slipstream.streams.engine.app import EngineJob, run_threads
from slipstream.streams.engine.runner import EngineSettings
from tests.conftest import Services
from tests.fraud_reference import reference, small_fraud_streams

pytestmark = pytest.mark.integration


def test_engine_features_and_states_on_a_redis_cluster(
    services: Services, contracts: Contracts, redis_cluster: LocalRedisCluster, tmp_path: Path
) -> None:
    tx, labels = small_fraud_streams(n_customers=60, n_terminals=120, days=20)
    with EventProducer(services.bootstrap_servers, contracts, linger_ms=5) as producer:
        for record in tx:
            producer.send("transactions", record)
        for record in labels:
            producer.send("labels", record)
    url = redis_cluster.config.redis_url
    project = f"t{uuid.uuid4().hex[:8]}"
    try:
        job = EngineJob(
            EngineSettings(services.bootstrap_servers, url, project=project), contracts.catalog.prefix, "fraud"
        )
        stats = run_threads(job, threading.Event(), until_idle_s=3.0)
        assert stats["customer"].applied == len(tx)
        assert stats["terminal"].applied == len(tx) + len(labels)

        layouts = view_layouts([FRAUD], project)
        customers = sorted({int(r["customer_id"]) for r in tx})
        terminals = sorted({int(r["terminal_id"]) for r in tx})
        keys = [(CUSTOMER_VIEW.name, {"customer_id": c}) for c in customers]
        keys += [(TERMINAL_VIEW.name, {"terminal_id": t}) for t in terminals]
        store = RedisStateStore.from_url(url, layouts.values())
        assert all(state is not None for state in store.read_states(keys))
        assert store.read_states([(CUSTOMER_VIEW.name, {"customer_id": 10**9})]) == [None]
        store.close()

        # Every master holds some of the project's entities (the writes were spread by slot).
        for port in redis_cluster.ports:
            node = redis.Redis(port=port)
            assert any(True for _ in node.scan_iter(match=b"*" + project.encode(), count=1000)), port
            node.close()

        reader = RedisFeatureReader.from_url(url, [layouts[CUSTOMER_VIEW.name]])
        mine = [reader.read({"customer_id": c}) for c in customers]
        want = reference(tx, labels)
        newest = {int(r["customer_id"]): r["transaction_id"] for r in tx}
        for customer, features in zip(customers, mine, strict=True):
            assert features is not None
            for name, value in features.values.items():
                assert value == pytest.approx(want[newest[customer]][name], abs=1e-9)
        config = FeastRepoConfig(project=project, repo_dir=tmp_path / "r", offline_dir=tmp_path / "o", redis_url=url)
        feast = apply_repo(config, [FRAUD])
        refs = [f"{CUSTOMER_VIEW.name}:{n}" for n in CUSTOMER_VIEW.feature_names]
        theirs = feast.get_online_features(features=refs, entity_rows=[{"customer_id": c} for c in customers]).to_dict()
        for i, features in enumerate(mine):
            assert features is not None
            for name in CUSTOMER_VIEW.feature_names:
                assert theirs[name][i] == pytest.approx(features.values[name], abs=1e-9)
    finally:
        project_key_count(url, project, delete=True)
