"""Record a window of a running pipeline, replay it through the same engine and scorer: every prediction again."""

from __future__ import annotations

from pathlib import Path

import pytest

from slipstream.replay.run import ReplayOptions, replay_slice
from slipstream.replay.slice_file import SliceReader
from tests.conftest import Services
from tests.integration.replay.production import record, run_production
from tests.integration.serving.fixtures import FraudWorld

pytestmark = pytest.mark.integration


def test_a_recorded_window_replays_to_the_same_predictions(
    world: FraudWorld, services: Services, tmp_path: Path
) -> None:
    production = run_production(world)
    manifest = record(production, tmp_path / "window.slice")
    live = len(world.live_tx)
    assert manifest["topics"]["transactions"]["records"] == live + production.poisoned
    assert manifest["added_sources"] == ["labels"]
    assert manifest["outputs"]["predictions"]["missing"] == 0
    assert manifest["history"]["topics"]["transactions"]["records"] > 0
    with SliceReader(tmp_path / "window.slice") as reader:
        reader.verify()
    result = replay_slice(
        tmp_path / "window.slice", ReplayOptions(challenger=world.versions[0]), world.app.settings, platform=services
    )
    summary = result.summary
    assert summary.recorded == production.scored == live
    assert summary.matched == live, result.to_dict()["diff"]
    assert summary.failing == 0, result.to_dict()["diff"]["listed"][:3]
    assert result.counts["swaps"] >= 1
    assert result.counts["dead_lettered"] == production.poisoned
    assert result.ok
    assert result.backtest is not None
    assert result.backtest["scored"] == live
    assert result.backtest["labelled"] == live
