"""`slipstream drill`, short: the whole platform (engine, score-stream, shadow, outcomes, drift, loop) at
accelerated event time in its own namespace, a small world (1,000 customers, two weeks live) and a policy scaled to
it, and a deliberately bad promotion on live day 2: the drift monitor closes a window per day, the loop rolls the bad
model back once the rollback gate's labels have matured — with its reason and evidence on `model-events` and in
MLflow — and the drill leaves no topic behind. The full drills (60 days, 5,000 customers, every scenario) are
commands: see docs/drills.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from slipstream.schemas.transport import TopicAdmin
from tests.conftest import Services

pytestmark = pytest.mark.integration

# The shipped policy's numbers are for ~9,600 transactions and ~80 frauds a day; this world has a fifth of that.
SMALL_WORLD = """
[triggers]
cooldown_days = 3
[triggers.performance]
min_labels = 2000
min_positives = 12
[promotion.shadow]
min_labels = 2000
min_positives = 12
[rollback]
min_labels = 2000
min_positives = 12
"""


def test_a_bad_promotion_is_rolled_back_by_the_loop(services: Services, tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(SMALL_WORLD)
    out = tmp_path / "drill.json"
    env = os.environ | {
        "KAFKA_BOOTSTRAP_SERVERS": services.bootstrap_servers,
        "REDIS_URL": services.redis_url,
        "SLIPSTREAM_STATE_DIR": str(tmp_path / "state"),
        "SLIPSTREAM_TOPIC_PREFIX": "",
        "COLUMNS": "200",
    }
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "slipstream",
            "drill",
            "--scenario",
            "none",
            "--customers",
            "1000",
            "--days",
            "14",
            "--bad-promotion",
            "--bad-promotion-day",
            "2",
            "--policy",
            str(policy),
            "--json",
            "--out",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert out.is_file(), run.stderr[-3000:]
    report = json.loads(out.read_text())
    # the drift monitor: a window per live day closed, every alarm with its evidence and threshold
    assert report["timeline"]["drift_start"] is None
    for alarm in report["alarms"]:
        assert alarm["value"] > alarm["threshold"] or alarm["kind"] in ("ERROR_RATE", "FLIP_RATE"), alarm
    # the bad promotion came from the drill, the rollback from the loop, with its reason and evidence
    bad = report["bad_promotion"]
    assert bad["rolled_back"], (bad, report["decisions"], run.stderr[-3000:])
    rollback = next(d for d in report["decisions"] if d["action"] == "ROLLED_BACK")
    assert rollback["actor"] == "slipstream loop" and rollback["reason"]
    assert rollback["evidence"]["paired"]["n"] >= 2000 if "paired" in rollback["evidence"] else rollback["evidence"]
    assert 7 <= bad["days_to_rollback"] <= 12  # labels are 7 days late; then ~1 day of them
    assert report["checks"]["bad_promotion_rolled_back"]["passed"]
    # realised performance per version: the bad model far below the one it replaced
    versions = report["periods"]["before_drift"]["versions"]
    assert versions[bad["version"]]["average_precision"] < versions["1"]["average_precision"] - 0.2
    # nothing left behind
    assert not TopicAdmin(services.bootstrap_servers).matching("drill-")
