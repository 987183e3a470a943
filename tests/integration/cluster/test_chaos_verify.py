"""The chaos drill's short version, as a user runs it: `slipstream features verify --workers 2 --chaos
kill,join,broker` on the 3-node Kafka and a Redis Cluster — a first-stage worker SIGKILLed, a worker joining the last
stage and the broker leading most input partitions stopped and started, all mid-stream — and the feature log and the
online store (Feast's SDK over the cluster) still equal the offline engine, with no dead letter. The long version
(14 days of traffic) is the same command with --days 14 (docs/scale-out.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from slipstream.cli.simulate import simulate_fraud_file
from slipstream.infra.config import PlatformConfig
from slipstream.infra.platform import Platform
from slipstream.infra.redis_cluster_local import LocalRedisCluster
from tests.integration.cluster.conftest import KAFKA_CLUSTER_CONTROLLER_PORT, KAFKA_CLUSTER_PORT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
REDIS_PORT = 17060  # the drill's own Redis Cluster: 17060-17062 (buses 27060-27062)


@pytest.fixture
def drill_redis(kafka_cluster: Platform) -> Iterator[int]:
    yield REDIS_PORT
    config = PlatformConfig(
        state_dir=kafka_cluster.config.state_dir, backend="local", redis_cluster=True, redis_cluster_port=REDIS_PORT
    )
    LocalRedisCluster(config).down()


def test_verify_under_kill_join_and_broker_restart_is_exact(
    kafka_cluster: Platform, drill_redis: int, tmp_path: Path
) -> None:
    events = tmp_path / "fraud.parquet"
    simulate_fraud_file(events, customers=150, terminals=300, days=12, show_progress=False)
    env = os.environ | {
        "SLIPSTREAM_STATE_DIR": str(kafka_cluster.config.state_dir),
        "SLIPSTREAM_FEAST_REPO_DIR": str(tmp_path / "feast"),
        "SLIPSTREAM_OFFLINE_DIR": str(tmp_path / "offline"),
        "SLIPSTREAM_KAFKA_BROKERS": "3",
        "SLIPSTREAM_KAFKA_PORT": str(KAFKA_CLUSTER_PORT),
        "SLIPSTREAM_CONTROLLER_PORT": str(KAFKA_CLUSTER_CONTROLLER_PORT),
        "SLIPSTREAM_REDIS_CLUSTER": "true",
        "SLIPSTREAM_REDIS_CLUSTER_PORT": str(drill_redis),
        "SLIPSTREAM_TOPIC_PREFIX": "",
    }
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "SLIPSTREAM_KAFKA_BOOTSTRAP_SERVERS", "SLIPSTREAM_REDIS_URL"):
        env.pop(name, None)
    args = ["features", "verify", "--events", str(events), "--workers", "2", "--chaos", "kill,join,broker"]
    done = subprocess.run(
        [sys.executable, "-m", "slipstream", *args, "--json"], env=env, capture_output=True, text=True, timeout=540
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["compared"] == report["transactions"] > 1000
    assert report["labels"] > 0
    assert (report["mismatches"], report["missing_vectors"], report["online_mismatches"]) == (0, 0, 0)
    assert report["dead_letter_topic_records"] == 0
    assert report["online_entities_compared"] > 0
    events_seen = [e["event"] for e in report["chaos"]["events"]]
    for expected in ("killed", "joined", "broker stopped", "broker back", "stage caught up"):
        assert expected in events_seen, events_seen
    assert events_seen.index("killed") < events_seen.index("joined") < events_seen.index("broker stopped")
    assert events_seen.index("broker back") < events_seen.index("stage caught up")  # disrupted mid-stream
    assert report["workers_per_stage"] == 2
