"""The reco ranker through ONNX: raw scores equal to LightGBM's within 1e-5 on real reco features, thresholds exact.

A small simulation (500 users, 1,500 items) gives the point-in-time candidate features the ranker is trained and
scored on; the binary fraud-like model beside it checks that the scorer returns probabilities for a classifier.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import onnx
import pytest

from slipstream.features.definitions.reco import RECO
from slipstream.features.offline import compute_offline
from slipstream.models.exceptions import OnnxExportError
from slipstream.models.onnx_export import OnnxScorer, ensure_parity, export_onnx, model_kind, parity_check
from slipstream.models.reco import (
    FEATURES,
    candidate_frame,
    cutoffs,
    future_labels,
    held_out_users,
    train_ranker,
    training_frame,
)
from slipstream.streams.simulate.reco import RecoSimConfig, simulate_interactions
from tests.model.test_onnx_parity import fraud_like

pytestmark = pytest.mark.model

SMALL = RecoSimConfig(n_users=500, n_items=1500, seed=7)


@dataclass(frozen=True)
class Ranker:
    booster: lgb.Booster
    x_train: np.ndarray
    x_test: np.ndarray  # held-out users' candidates at the final cut-off


@pytest.fixture(scope="module")
def ranker() -> Ranker:
    sim = simulate_interactions(SMALL)
    view_rows = compute_offline(RECO, {"interactions": sim.events}).view_rows
    train = training_frame(sim, view_rows, seed=3)
    model = train_ranker(train, seed=3)  # the default 200 rounds, as `slipstream train reco` does
    final, _ = cutoffs(SMALL)
    test = candidate_frame(sim, view_rows, final, held_out_users(sim, final, seed=3), future_labels(sim, final))
    names = list(FEATURES)
    return Ranker(model.booster, train[names].to_numpy(np.float64), test[names].to_numpy(np.float64))


def test_ranker_parity_on_reco_features(ranker: Ranker) -> None:
    onnx_bytes = export_onnx(ranker.booster, FEATURES)
    report = ensure_parity(ranker.booster, onnx_bytes, ranker.x_test)
    assert report.n == len(ranker.x_test) > 10_000
    assert report.max_abs_diff <= 1e-5
    assert report.max_abs_diff < 1e-6  # exact thresholds and leaves: only the float32 output rounds (~2e-7)
    train_report = ensure_parity(ranker.booster, onnx_bytes, ranker.x_train)
    assert train_report.max_abs_diff <= 1e-5


def test_scorer_returns_raw_scores_for_the_ranker(ranker: Ranker) -> None:
    scorer = OnnxScorer(export_onnx(ranker.booster, FEATURES))
    assert scorer.output == "raw_score"
    assert scorer.n_features == len(FEATURES)
    scores = scorer.predict(ranker.x_test[:2000])
    raw = ranker.booster.predict(ranker.x_test[:2000], raw_score=True)
    assert scores.shape == (2000,) and scores.dtype == np.float64
    np.testing.assert_allclose(scores, raw, rtol=0, atol=1e-6)
    assert scores.min() < 0 or scores.max() > 1  # unsquashed: not a probability
    assert np.array_equal(np.argsort(-scores, kind="stable")[:10], np.argsort(-raw, kind="stable")[:10])


def test_scorer_returns_probabilities_for_the_binary_model() -> None:
    x, y = fraud_like(5_000, seed=2)
    names = [f"f{i}" for i in range(x.shape[1])]
    params = {"objective": "binary", "num_leaves": 15, "verbose": -1, "num_threads": 1, "deterministic": True}
    booster = lgb.train(params, lgb.Dataset(x, y, feature_name=names), num_boost_round=50)
    assert model_kind(booster) == "binary"
    scorer = OnnxScorer(export_onnx(booster, names))
    assert scorer.output == "probability"
    probabilities = scorer.predict(x[:2000])
    assert ((probabilities > 0) & (probabilities < 1)).all()
    np.testing.assert_allclose(probabilities, booster.predict(x[:2000]), rtol=0, atol=1e-5)
    raw = booster.predict(x[:2000], raw_score=True)
    assert np.max(np.abs(probabilities - raw)) > 1.0  # a logit, not what the scorer returns


def test_ranker_graph_is_a_double_regressor_with_exact_thresholds_and_leaves(ranker: Ranker) -> None:
    assert model_kind(ranker.booster) == "ranking"
    model = onnx.load_from_string(export_onnx(ranker.booster, FEATURES))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    assert [o.name for o in model.graph.output] == ["variable"]
    (tree,) = [n for n in model.graph.node if n.op_type.startswith("TreeEnsemble")]
    assert tree.op_type == "TreeEnsembleRegressor"
    attrs = {a.name: a for a in tree.attribute}
    assert {"nodes_values_as_tensor", "target_weights_as_tensor"} <= set(attrs)
    assert not {"nodes_values", "target_weights"} & set(attrs)
    thresholds = onnx.numpy_helper.to_array(attrs["nodes_values_as_tensor"].t)
    leaves = onnx.numpy_helper.to_array(attrs["target_weights_as_tensor"].t)
    assert thresholds.dtype == leaves.dtype == np.float64
    trees = ranker.booster.trees_to_dataframe()
    assert set(trees["threshold"].dropna()) <= set(thresholds.tolist())  # the booster's doubles, bit for bit
    assert set(trees.loc[trees["split_feature"].isna(), "value"]) == set(leaves.tolist())


def test_exact_thresholds_matter_for_the_ranker(ranker: Ranker) -> None:
    trees = ranker.booster.trees_to_dataframe()
    splits = trees.dropna(subset=["threshold"])
    splits = splits[splits["threshold"] != np.float64(np.float32(splits["threshold"]))]  # not exact in float32
    column = {name: j for j, name in enumerate(FEATURES)}
    rows = np.repeat(ranker.x_test[:1], len(splits), axis=0)
    for i, (feature, threshold) in enumerate(zip(splits["split_feature"], splits["threshold"], strict=True)):
        rows[i, column[feature]] = np.nextafter(threshold, np.inf)  # right of the split in double, not in float32
    assert len(rows) > 100
    assert parity_check(ranker.booster, export_onnx(ranker.booster, FEATURES), rows).max_abs_diff < 1e-6
    assert not parity_check(ranker.booster, export_onnx(ranker.booster, FEATURES, double=False), rows).passed


def test_other_objectives_are_refused() -> None:
    x, _ = fraud_like(500, seed=3)
    booster = lgb.train({"objective": "regression", "verbose": -1, "num_threads": 1}, lgb.Dataset(x, x[:, 0]), 5)
    with pytest.raises(OnnxExportError, match="objective 'regression'"):
        model_kind(booster)
    with pytest.raises(OnnxExportError, match="objective 'regression'"):
        export_onnx(booster, [f"f{i}" for i in range(x.shape[1])])
