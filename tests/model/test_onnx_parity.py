"""ONNX vs LightGBM on 10,000 rows of fraud-like features: |p_onnx - p_lightgbm| <= 1e-5 on every row."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from slipstream.features.definitions.fraud import FRAUD
from slipstream.models.onnx_export import ensure_parity, export_onnx

pytestmark = pytest.mark.model


def fraud_like(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The 15 model inputs with the shapes of the handbook's features: cents, flags, counts, means, ratios."""
    rng = np.random.default_rng(seed)
    amount = np.round(rng.gamma(2.0, 30.0, n), 2)
    columns = [amount, (rng.random(n) < 2 / 7).astype(float), (rng.random(n) < 0.15).astype(float)]
    for days in (1, 7, 30):
        count = rng.poisson(1.5 * days, n) + 1.0
        columns += [count, np.round(rng.gamma(2.0, 30.0, n) * count, 2) / count]
    for days in (1, 7, 30):
        count = rng.poisson(8 * days, n).astype(float)
        frauds = rng.binomial(count.astype(int), 0.05).astype(float)
        columns += [count, np.divide(frauds, count, out=np.zeros(n), where=count > 0)]
    x = np.column_stack(columns)
    logit = -4 + 0.01 * amount + 4 * x[:, 14] + 2 * (amount > 220) + 0.5 * x[:, 2]
    return x, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)


def test_parity_on_10k_fraud_like_rows() -> None:
    names = list(FRAUD.model_input)
    x, y = fraud_like(40_000, seed=0)
    params = {"objective": "binary", "num_leaves": 63, "learning_rate": 0.05, "verbose": -1, "num_threads": 1}
    booster = lgb.train(params, lgb.Dataset(x, y, feature_name=names), num_boost_round=300)
    sample, _ = fraud_like(10_000, seed=1)
    report = ensure_parity(booster, export_onnx(booster, names), sample)
    assert report.n == 10_000
    assert report.max_abs_diff <= 1e-5
