"""`slipstream bench features --json --parts online --workers 2` on the real broker and Redis, over a small simulated
slice: the historical keys are still there, and the per-stage figures are real — every stage consumed every event,
its workers' CPU per event is positive, and the broker saw both workers of every stage holding partitions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from slipstream.cli.simulate import simulate_fraud_file
from slipstream.schemas.transport import TopicAdmin
from tests.conftest import Services

pytestmark = pytest.mark.integration

RUN_KEYS = {
    "runtime",
    "workers",
    "events",
    "measured_events",
    "seconds",
    "online_events_per_s",
    "workers_joined_s",
    "engine_cpu_us_per_event",
    "feature_log_extra_records",
    "stages",
    "ratio_vs_1_worker",
}
STAGE_KEYS = {
    "workers",
    "workers_holding_partitions",
    "partitions",
    "records_consumed",
    "view_updates",
    "cpu_us_per_event",
}


def test_bench_features_online_with_two_workers_per_stage_and_the_faust_runtime(
    services: Services, tmp_path: Path
) -> None:
    data = tmp_path / "fraud.parquet"
    # ~11,500 events in the 3 days: a backlog for two workers per stage
    simulate_fraud_file(data, customers=2000, terminals=2000, days=3, show_progress=False)
    prefix = f"t-{uuid.uuid4().hex[:10]}."
    env = os.environ | {
        "KAFKA_BOOTSTRAP_SERVERS": services.bootstrap_servers,
        "REDIS_URL": services.redis_url,
        "SLIPSTREAM_TOPIC_PREFIX": prefix,
        "SLIPSTREAM_STATE_DIR": str(tmp_path / "state"),
    }
    cmd = [sys.executable, "-m", "slipstream", "bench", "features", "--json", "--parts", "online,faust", "--days", "3"]
    done = subprocess.run(
        [*cmd, "--workers", "2", "--data", str(data)], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    assert {"events", "seconds", "online_events_per_s", "machine_cores", "machine_load_1m"} <= set(results)
    assert results["online_events_per_s"] > 0 and results["online_workers"] == 2
    [run] = results["online_by_workers"]
    assert set(run) == RUN_KEYS and run["ratio_vs_1_worker"] is None  # no 1-worker run to compare with
    assert run["runtime"] == "kafka"
    # the same work on the Faust runtime (one process per stage), and the same-run ratios
    assert results["faust_events_per_s"] > 0 and results["faust_cpu_us_per_event"] > 0
    assert set(results["faust_stages"]) == {"customer", "terminal"}
    assert results["faust_stages"]["customer"]["records_consumed"] == results["events"]
    assert all(stage["workers_holding_partitions"] == 1 for stage in results["faust_stages"].values())
    ratio = results["online_events_per_s"] / results["faust_events_per_s"]
    assert results["online_ratio_vs_faust"] == pytest.approx(ratio, abs=0.01)
    assert results["cpu_ratio_kafka_vs_faust"] > 0
    assert results["online_ratio_by_workers"] is None
    assert run["stages"] == results["online_stages"]
    assert run["feature_log_extra_records"] >= 0 and run["engine_cpu_us_per_event"] > 0
    assert run["workers_joined_s"] > 0  # published and measured once both workers of every stage held partitions
    assert 0 < run["measured_events"] <= run["events"] == results["events"]
    partitions = {"customer": 12, "terminal": 6}  # transactions + labels (6 each); the repartition topic (6)
    assert set(run["stages"]) == set(partitions)
    assert run["stages"]["customer"]["records_consumed"] == results["events"]  # a source topic has no markers
    for name, stage in run["stages"].items():
        assert set(stage) == STAGE_KEYS, name
        # every transaction and label, through every stage (the terminal stage also reads watermark markers)
        assert stage["records_consumed"] >= results["events"], name
        assert stage["view_updates"] > 0, name
        assert stage["cpu_us_per_event"] > 0, name
        assert stage["workers"] == 2 and stage["workers_holding_partitions"] == 2, name
        assert stage["partitions"] == partitions[name], name
    admin = TopicAdmin(services.bootstrap_servers)
    assert not [t for t in admin.matching(prefix) if t.startswith(f"{prefix}bench-")]  # the runs', removed
    admin.delete(admin.matching(prefix))
