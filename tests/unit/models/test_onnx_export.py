"""ONNX export of a small LightGBM booster: probabilities match, the parity gate reports and refuses."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import onnx
import pytest

from slipstream.models.exceptions import InvalidInputError, OnnxExportError, ParityError
from slipstream.models.onnx_export import OnnxScorer, ensure_parity, export_onnx, parity_check

NAMES = ("amount", "night", "count", "risk")


@pytest.fixture(scope="module")
def data() -> tuple[lgb.Booster, np.ndarray]:
    rng = np.random.default_rng(7)
    x = np.column_stack(
        [np.round(rng.gamma(2.0, 30.0, 3000), 2), rng.integers(0, 2, 3000), rng.poisson(5, 3000), rng.random(3000)]
    ).astype(np.float64)
    y = ((x[:, 0] > 90) | (x[:, 3] > 0.9)).astype(int)
    params = {"objective": "binary", "num_leaves": 15, "verbose": -1, "num_threads": 1, "deterministic": True}
    booster = lgb.train(params, lgb.Dataset(x, y, feature_name=list(NAMES)), num_boost_round=30)
    return booster, x


def test_export_gives_lightgbm_probabilities(data: tuple[lgb.Booster, np.ndarray]) -> None:
    booster, x = data
    scorer = OnnxScorer(export_onnx(booster, NAMES))
    assert scorer.n_features == 4
    assert np.max(np.abs(scorer.predict(x) - booster.predict(x))) <= 1e-5


def test_double_graph_keeps_exact_thresholds_where_float32_flips(data: tuple[lgb.Booster, np.ndarray]) -> None:
    booster, x = data
    trees = booster.trees_to_dataframe()
    thresholds = trees.loc[trees.split_feature == "risk", "threshold"].to_numpy()
    rows = np.repeat(x[:1], len(thresholds), axis=0)
    rows[:, 3] = thresholds * (1 + 3e-8)  # just right of each threshold in double, equal to it in float32
    exact = parity_check(booster, export_onnx(booster, NAMES), rows)
    assert exact.passed and exact.n == len(thresholds)
    single = parity_check(booster, export_onnx(booster, NAMES, double=False), rows)
    assert not single.passed


def test_graph_has_probability_tensor_and_double_input(data: tuple[lgb.Booster, np.ndarray]) -> None:
    model = onnx.load_from_string(export_onnx(data[0], NAMES))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    assert "probabilities" in [o.name for o in model.graph.output]
    assert not [n for n in model.graph.node if n.op_type == "ZipMap"]


def test_parity_report(data: tuple[lgb.Booster, np.ndarray]) -> None:
    booster, x = data
    report = ensure_parity(booster, export_onnx(booster, NAMES), x[:500])
    assert report.passed and report.n == 500 and report.max_abs_diff <= 1e-5


def test_mismatch_raises_with_the_numbers(data: tuple[lgb.Booster, np.ndarray]) -> None:
    booster, x = data
    other = lgb.train(
        {"objective": "binary", "num_leaves": 4, "verbose": -1, "num_threads": 1},
        lgb.Dataset(x, (x[:, 2] > 5).astype(int)),
        num_boost_round=5,
    )
    report = parity_check(booster, export_onnx(other, NAMES), x[:200])
    assert not report.passed
    with pytest.raises(ParityError, match=rf"max \|p_onnx - p_lightgbm\| = .* at row {report.worst_row} of 200"):
        ensure_parity(booster, export_onnx(other, NAMES), x[:200])


def test_bad_inputs_are_named(data: tuple[lgb.Booster, np.ndarray]) -> None:
    booster, x = data
    with pytest.raises(OnnxExportError, match="reads 4 features but 2"):
        export_onnx(booster, NAMES[:2])
    with pytest.raises(InvalidInputError, match=r"shape \(10, 3\)"):
        OnnxScorer(export_onnx(booster, NAMES)).predict(x[:10, :3])
    with pytest.raises(ParityError, match="empty"):
        ensure_parity(booster, export_onnx(booster, NAMES), x[:0])
