"""Feast's import turns prometheus_client's multiprocess mode on process-wide (PROMETHEUS_MULTIPROC_DIR); Slipstream
keeps its metrics in-process, so two registries of one process never share a counter, in the process that imported
Feast and in its children."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import os, subprocess, sys
import slipstream
import feast  # sets PROMETHEUS_MULTIPROC_DIR for its own feature server
from slipstream.serving.metrics import ScorerMetrics

def count():
    first, second = ScorerMetrics(), ScorerMetrics()
    first.requests.labels("http", "fraud", "ok").inc()
    second.requests.labels("http", "fraud", "ok")  # a child of its own, at 0 unless the value is shared
    labels = {"path": "http", "endpoint": "fraud", "outcome": "ok"}
    return second.registry.get_sample_value("slipstream_requests_total", labels)

if len(sys.argv) > 1:
    print("child", count())
else:
    print("feast set", os.path.basename(os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")).startswith("feast_metrics_"))
    print("parent", count())
    sys.stdout.flush()
    subprocess.run([sys.executable, "-c", SCRIPT, "child"], check=True)
"""


def test_registries_share_nothing_after_feast_is_imported() -> None:
    out = subprocess.run(
        [sys.executable, "-c", f"SCRIPT = {SCRIPT!r}\n" + SCRIPT], capture_output=True, text=True, check=True
    )
    assert out.stdout.split("\n")[:3] == ["feast set True", "parent 0.0", "child 0.0"], out.stdout + out.stderr


def test_mlflow_telemetry_is_off_unless_the_user_turns_it_on(tmp_path: Path) -> None:
    """MLflow's client would send usage telemetry to config.mlflow-telemetry.io: Slipstream turns it off by default."""
    script = (
        "import os, slipstream; from mlflow.telemetry.utils import is_telemetry_disabled; "
        "print(os.environ['MLFLOW_DISABLE_TELEMETRY'], is_telemetry_disabled())"
    )
    base = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # no CI variables: MLflow's own CI check stays out
    off = subprocess.run([sys.executable, "-c", script], env=base, capture_output=True, text=True, check=True)
    assert off.stdout.split() == ["true", "True"], off.stderr
    kept = subprocess.run(
        [sys.executable, "-c", "import os, slipstream; print(os.environ['MLFLOW_DISABLE_TELEMETRY'])"],
        env=base | {"MLFLOW_DISABLE_TELEMETRY": "false"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert kept.stdout.strip() == "false"
