"""`slipstream bench replay --json`, small: a recorded window replays with 0 failing predictions, every figure is
there and positive (no timing is asserted), and the run leaves nothing behind."""

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

POSITIVE = (
    "events_per_s",
    "window_records",
    "window_transactions",
    "window_s",
    "chunks",
    "history_records",
    "history_records_per_s",
    "cpu_us_per_event_this_process",
    "cpu_us_per_event_engine",
    "baseline_records",
    "baseline_produce_per_s",
    "baseline_consume_per_s",
    "baseline_produce_consume_per_s",
    "ratio_to_baseline",
    "window_time_samples",
)


def test_bench_replay_json(services: Services, tmp_path: Path) -> None:
    prefix = f"t-{uuid.uuid4().hex[:10]}."
    env = os.environ | {
        "KAFKA_BOOTSTRAP_SERVERS": services.bootstrap_servers,
        "REDIS_URL": services.redis_url,
        "SLIPSTREAM_TOPIC_PREFIX": prefix,
        "SLIPSTREAM_STATE_DIR": str(tmp_path),
    }
    cmd = [sys.executable, "-m", "slipstream", "bench", "replay", "--json", "--days", "14"]
    done = subprocess.run(
        [*cmd, "--window-events", "300", "--backends", "local"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    # the replay equals the offline engine (the definition of the features) on every prediction; production's own
    # exactness is a figure of the run (`failing`, `offline_check.recorded`), not the replay's to guarantee
    assert results["offline_check"]["replayed"] == {"checked": 300, "differ": 0, "by_feature": {}}
    assert results["failing"] == results["diff"]["failing"] >= 0
    assert results["diff"]["recorded"] == results["diff"]["matched"] == results["production"]["scored"] == 300
    assert results["window_transactions"] == results["production"]["transactions"] == 300
    assert results["window_records"] == 300 + results["production"]["labels"] == results["baseline_records"]
    for key in POSITIVE:
        assert results[key] > 0, key
    assert results["platforms"]["local"]["available"] and results["platforms"]["local"]["platform_start_s"] > 0
    assert results["platforms"]["local"]["replayed_here"] is True
    assert set(results["window_time_shares"]) <= {
        "scorer_poll_and_decode",
        "scorer_features_and_model",
        "scorer_produce_predictions",
        "scorer_other",
        "scorer_commit",
        "feed_produce",
        "feed_flush_wait_acks",
        "model_swap",
        "gate_other",
        "feed_read_slice_and_decode",
        "other",
    }
    assert abs(sum(results["window_time_shares"].values()) - 1) < 0.01
    assert results["target_events_per_s"] == 50_000 and isinstance(results["target_met"], bool)
    admin = TopicAdmin(services.bootstrap_servers)
    assert not [t for t in admin.matching(prefix) if t.startswith(f"{prefix}bench-replay-")]  # the run's, removed
    admin.delete(admin.matching(prefix))
