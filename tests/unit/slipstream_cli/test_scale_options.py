"""The scale-out options are checked before any work starts, and a bad value is named."""

from __future__ import annotations

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
