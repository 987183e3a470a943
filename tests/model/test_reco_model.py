"""Behavioural checks of the reco ranker on a small simulation: it beats popularity, trains deterministically and
reads no feature or label from after its cut-off."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from slipstream.features.definitions.reco import RECO
from slipstream.features.offline import compute_offline
from slipstream.models.reco import (
    EVAL_DAYS,
    FEATURES,
    POPULARITY,
    candidate_frame,
    cutoffs,
    evaluate_reco,
    future_labels,
    held_out_users,
    predict_scores,
    train_ranker,
    training_frame,
)
from slipstream.streams.simulate.reco import RecoSimConfig, RecoSimulation, simulate_interactions

pytestmark = pytest.mark.model

SMALL = RecoSimConfig(n_users=500, n_items=1500, seed=7)
PARAMS = {"n_estimators": 60}


@dataclass(frozen=True)
class Small:
    sim: RecoSimulation
    view_rows: dict[str, pd.DataFrame]
    train: pd.DataFrame


@pytest.fixture(scope="module")
def small() -> Small:
    sim = simulate_interactions(SMALL)
    view_rows = compute_offline(RECO, {"interactions": sim.events}).view_rows
    return Small(sim, view_rows, training_frame(sim, view_rows, seed=3))


def test_ranker_beats_popularity_on_ndcg() -> None:
    result = evaluate_reco(simulate_interactions(SMALL), seed=3)
    assert result["users"] > 50
    assert result["candidates_per_user"] >= 100
    assert result["ndcg_at_10"] > 1.2 * result["popularity"]["ndcg_at_10"]
    assert result["recall_at_10"] > result["popularity"]["recall_at_10"]


def test_training_is_deterministic(small: Small) -> None:
    first = train_ranker(small.train, seed=5, params=PARAMS)
    again = train_ranker(small.train.sample(frac=1.0, random_state=1), seed=5, params=PARAMS)  # row order aside
    assert first.feature_names == tuple(FEATURES)
    assert first.booster.model_to_string() == again.booster.model_to_string()
    np.testing.assert_array_equal(predict_scores(first, small.train), predict_scores(again, small.train))


def test_no_leakage_across_cutoffs(small: Small) -> None:
    final, train_cutoffs = cutoffs(SMALL)
    assert all(c + EVAL_DAYS * pd.Timedelta(days=1) <= final for c in train_cutoffs)  # training labels end by then
    assert not set(held_out_users(small.sim, final, seed=3)) & set(small.train["user_id"])
    cutoff = train_cutoffs[-1]
    users = np.arange(40, dtype=np.int64)
    labels = future_labels(small.sim, cutoff, EVAL_DAYS * pd.Timedelta(days=1))
    full = candidate_frame(small.sim, small.view_rows, cutoff, users, labels)
    past = small.sim.events[small.sim.events["event_time"] < cutoff].reset_index(drop=True)
    rows = compute_offline(RECO, {"interactions": past}).view_rows
    truncated = candidate_frame(small.sim, rows, cutoff, users, labels)
    pd.testing.assert_frame_equal(full, truncated)  # features only see events before the cut-off
    assert set(full.columns) >= {*FEATURES, "label", POPULARITY}
