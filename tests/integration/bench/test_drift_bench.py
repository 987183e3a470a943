"""`slipstream bench drift --json` on the real broker, for a few seconds: its keys, every prediction consumed, windows
closed with every prediction counted, and its namespace removed afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from slipstream.schemas.transport import TopicAdmin
from tests.conftest import Services

pytestmark = pytest.mark.integration

KEYS = {
    "predictions",
    "rate",
    "seconds",
    "features",
    "cpu_us_per_event",
    "baseline_decode_cpu_us_per_record",
    "ratio_to_decode_baseline",
    "events_consumed",
    "behind",
    "windows_closed",
    "counted_in_windows",
    "late",
    "window_close_lag_p50_ms",
    "window_close_lag_p99_ms",
}


def test_bench_drift_json(services: Services, tmp_path: Path) -> None:
    prefix = f"t-{uuid.uuid4().hex[:10]}."
    env = os.environ | {
        "KAFKA_BOOTSTRAP_SERVERS": services.bootstrap_servers,
        "REDIS_URL": services.redis_url,
        "SLIPSTREAM_TOPIC_PREFIX": prefix,
        "SLIPSTREAM_STATE_DIR": str(tmp_path),
    }
    cmd = [sys.executable, "-m", "slipstream", "bench", "drift", "--json", "--seconds", "5", "--rate", "400"]
    done = subprocess.run(
        [*cmd, "--window-every", "2"], env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    assert set(results) == KEYS
    assert results["predictions"] == 2000 and results["features"] == 15
    assert results["events_consumed"] == 2000 + 500  # the measured predictions and the warm-up, every one
    assert results["behind"] == 0
    assert results["windows_closed"] == 3  # the warm-up day and two measured days; the third is still open
    assert results["late"] == 0 and results["counted_in_windows"] == 500 + 2 * 800
    assert results["cpu_us_per_event"] > 0 and results["baseline_decode_cpu_us_per_record"] > 0
    assert results["window_close_lag_p99_ms"] >= results["window_close_lag_p50_ms"] >= 0
    admin = TopicAdmin(services.bootstrap_servers)
    assert not [t for t in admin.matching(prefix) if t.startswith(f"{prefix}bench-drift-")]  # the run's, removed
    admin.delete(admin.matching(prefix))  # the CLI's own topics (it applies the catalog under the prefix)
