"""The scale-out options are checked before any work starts, and a bad value is named."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from slipstream.cli import app


@pytest.mark.parametrize("value", ["0", "1,x", ",", "-2"])
def test_bench_features_workers_must_be_counts(value: str) -> None:
    result = CliRunner().invoke(app, ["bench", "features", "--parts", "online", "--workers", value])
    assert result.exit_code != 0
    assert "--workers" in result.output and value in result.output


def test_score_stream_worker_id_is_checked() -> None:
    result = CliRunner().invoke(app, ["score-stream", "--worker-id", "a b"], env={"COLUMNS": "200"})
    assert result.exit_code != 0
    assert "--worker-id" in result.output and "'a b'" in result.output


@pytest.mark.parametrize(
    ("chaos", "workers", "named"),
    [("kill,boom", "2", "'boom'"), ("kill", "1", "--workers 2 or more (got 1)"), ("", "2", "names no action")],
)
def test_verify_chaos_is_checked_before_anything_starts(chaos: str, workers: str, named: str, tmp_path: Path) -> None:
    from slipstream.cli.simulate import simulate_fraud_file

    events = tmp_path / "fraud.parquet"
    simulate_fraud_file(events, customers=20, terminals=40, days=2, show_progress=False)
    env = {"COLUMNS": "200", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "REDIS_URL": "redis://127.0.0.1:1/0"}
    args = ["features", "verify", "--events", str(events), "--workers", workers, "--chaos", chaos]
    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 2, result.output
    assert named in result.output
