"""Record a window of a running pipeline, replay it through the same engine and scorer: every prediction again."""

from __future__ import annotations

from pathlib import Path

import pytest

from slipstream.replay.run import ReplayOptions, replay_slice
from slipstream.replay.slice_file import SliceReader
from tests.conftest import Services
from tests.integration.replay.conftest import Recorded

pytestmark = pytest.mark.integration


def test_the_slice_holds_the_window_its_sources_history_outputs_and_models(recorded_slice: Recorded) -> None:
    production, manifest = recorded_slice.production, recorded_slice.manifest
    live = len(production.world.live_tx)
    assert manifest["topics"]["transactions"]["records"] == live + production.poisoned
    assert manifest["topics"]["labels"]["records"] == live
    assert manifest["added_sources"] == ["labels"]
    assert manifest["undecodable_in_window"] == {"transactions": production.poisoned}
    assert manifest["outputs"]["predictions"] == {"inputs": live, "found": live, "missing": 0}
    history = manifest["history"]["topics"]
    assert history["transactions"]["records"] == len(production.world.history_tx)
    assert history["transactions"]["complete"] is True
    assert {m for m, v in manifest["models"].items() if v["included"]} == {f"fraud/{v}" for v in production.versions}
    assert [c["version"] for c in manifest["serving"]["fraud"]][-2:] == production.versions
    with SliceReader(recorded_slice.path) as reader:
        reader.verify()
        window = list(reader.records("slice", "transactions"))
    assert all(r.timestamp_type == 1 for r in window)
    assert [r.offset for r in window if r.partition == 0] == sorted(r.offset for r in window if r.partition == 0)


def test_a_recorded_window_replays_to_the_same_predictions(
    recorded_slice: Recorded, services: Services, tmp_path: Path
) -> None:
    production = recorded_slice.production
    world = production.world
    live = len(world.live_tx)
    result = replay_slice(
        recorded_slice.path,
        ReplayOptions(challenger=world.versions[0], offline_check=True),
        world.app.settings,
        platform=services,
    )
    summary = result.summary
    assert summary.recorded == production.scored == live
    assert summary.matched == live, result.to_dict()["diff"]
    assert summary.failing == 0, result.to_dict()["diff"]["listed"][:3]
    assert result.counts["swaps"] >= 1  # the promotion halfway, reproduced event for event
    assert {p["model_version"] for p in result.replayed} == set(production.versions)
    assert result.counts["dead_lettered"] == production.poisoned
    assert result.ok
    assert result.offline is not None  # the third opinion: both sides equal the offline engine's features
    assert result.offline["recorded"] == result.offline["replayed"] == {"checked": live, "differ": 0, "by_feature": {}}
    backtest = result.backtest
    assert backtest is not None
    assert backtest["scored"] == backtest["labelled"] == live
    assert backtest["positives"] == sum(int(int(r["transaction_id"]) in world.frauds) for r in world.live_tx)
    # the challenger is the first champion: where it scored, it scores the same
    assert backtest["flips"] <= sum(p["model_version"] != world.versions[0] for p in result.replayed)


def test_a_what_if_with_another_model_differs_and_says_so(recorded_slice: Recorded, services: Services) -> None:
    world = recorded_slice.production.world
    result = replay_slice(
        recorded_slice.path, ReplayOptions(model=world.versions[0]), world.app.settings, platform=services
    )
    assert result.mode == "what-if" and result.ok
    assert {p["model_version"] for p in result.replayed} == {world.versions[0]}
    assert result.summary.model_version == sum(p["model_version"] != world.versions[0] for p in result.recorded) > 0
    diff = result.to_dict()["diff"]
    assert result.summary.features == 0, (
        diff["differences"],
        diff["listed"][:2],
    )  # features do not depend on the model
