"""The parity sample a model card carries, and LoadedModel.check_parity replaying it (no MLflow, no broker)."""

from __future__ import annotations

import json
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest

from slipstream.models.exceptions import ParityError, RegistryError
from slipstream.models.onnx_export import PARITY_ROWS, OnnxScorer, export_onnx, parity_sample
from slipstream.models.registry import LoadedModel

NAMES = ("amount", "night", "count", "risk")


@pytest.fixture(scope="module")
def data() -> tuple[lgb.Booster, np.ndarray]:
    rng = np.random.default_rng(11)
    x = np.column_stack(
        [np.round(rng.gamma(2.0, 30.0, 2000), 2), rng.integers(0, 2, 2000), rng.poisson(5, 2000), rng.random(2000)]
    ).astype(np.float64)
    y = ((x[:, 0] > 90) | (x[:, 3] > 0.9)).astype(int)
    params = {"objective": "binary", "num_leaves": 15, "verbose": -1, "num_threads": 1, "deterministic": True}
    return lgb.train(params, lgb.Dataset(x, y, feature_name=list(NAMES)), num_boost_round=20), x


def _loaded(booster: lgb.Booster, card: dict[str, Any]) -> LoadedModel:
    onnx_bytes = export_onnx(booster, NAMES)
    return LoadedModel("fraud", "7", onnx_bytes, OnnxScorer(onnx_bytes), NAMES, 0.5, card)


def test_sample_is_evenly_spaced_rows_with_lightgbm_predictions(data: tuple[lgb.Booster, np.ndarray]) -> None:
    booster, x = data
    sample = parity_sample(booster, x)
    rows = np.asarray(sample["x"])
    assert rows.shape == (PARITY_ROWS, 4) == (64, 4)
    np.testing.assert_array_equal(rows[0], x[0])
    np.testing.assert_array_equal(rows[-1], x[-1])
    picked = [int(np.flatnonzero((x == row).all(axis=1))[0]) for row in rows]
    assert picked == sorted(picked) and len(set(picked)) == 64
    assert max(np.diff(picked)) - min(np.diff(picked)) <= 1  # evenly spaced
    np.testing.assert_array_equal(sample["expected"], booster.predict(rows))
    assert sample == parity_sample(booster, x)  # deterministic
    few = parity_sample(booster, x[:5])
    np.testing.assert_array_equal(few["x"], x[:5])  # fewer rows than 64: all of them


def test_sample_survives_the_card_json_bit_for_bit(data: tuple[lgb.Booster, np.ndarray]) -> None:
    booster, x = data
    sample = parity_sample(booster, x)
    again = json.loads(json.dumps({"parity_sample": sample}, indent=2, sort_keys=True))["parity_sample"]
    assert again == sample
    assert np.asarray(again["expected"]).tobytes() == booster.predict(np.asarray(sample["x"])).tobytes()


def test_check_parity_passes_on_the_registered_sample(data: tuple[lgb.Booster, np.ndarray]) -> None:
    booster, x = data
    card = json.loads(json.dumps({"parity_sample": parity_sample(booster, x)}))
    loaded = _loaded(booster, card)
    report = loaded.check_parity()
    assert report.passed and report.n == 64 and report.tol == 1e-5
    assert report.max_abs_diff < 1e-6
    assert loaded.kind == "binary"  # a card without "kind" is a binary model


def test_check_parity_refuses_a_tampered_expected_value(data: tuple[lgb.Booster, np.ndarray]) -> None:
    booster, x = data
    sample = parity_sample(booster, x)
    sample["expected"][17] += 2e-4
    loaded = _loaded(booster, {"parity_sample": sample})
    with pytest.raises(
        ParityError,
        match=r"model 'fraud' version 7 fails its parity check: at row 17 of 64 .* = 0\.0002 > tolerance 1e-05",
    ):
        loaded.check_parity()
    assert loaded.check_parity(tol=1e-3).worst_row == 17  # a looser tolerance accepts it, and names the row


def test_check_parity_refuses_what_it_cannot_check(data: tuple[lgb.Booster, np.ndarray]) -> None:
    booster, x = data
    with pytest.raises(ParityError, match="model 'fraud' version 7 has no parity sample"):
        _loaded(booster, {"features": list(NAMES)}).check_parity()
    sample = parity_sample(booster, x)
    with pytest.raises(ParityError, match=r"malformed parity sample, x of shape \(64, 4\) and expected of shape \(63,"):
        _loaded(booster, {"parity_sample": {**sample, "expected": sample["expected"][:-1]}}).check_parity()
    narrow = {"x": [row[:3] for row in sample["x"]], "expected": sample["expected"]}
    with pytest.raises(ParityError, match="cannot score its own parity sample"):
        _loaded(booster, {"parity_sample": narrow}).check_parity()
    not_a_number = {"x": sample["x"], "expected": [float("nan"), *sample["expected"][1:]]}
    with pytest.raises(ParityError, match="at row 0 of 64"):
        _loaded(booster, {"parity_sample": not_a_number}).check_parity()


def test_kind_comes_from_the_card(data: tuple[lgb.Booster, np.ndarray]) -> None:
    booster, _ = data
    assert _loaded(booster, {"kind": "ranking"}).kind == "ranking"
    with pytest.raises(RegistryError, match="unknown model kind 'regression'"):
        _ = _loaded(booster, {"kind": "regression"}).kind


def test_parity_sample_refuses_an_unusable_sample(data: tuple[lgb.Booster, np.ndarray]) -> None:
    booster, x = data
    with pytest.raises(ParityError, match=r"\(n>0, 4\) rows, got shape \(0, 4\)"):
        parity_sample(booster, x[:0])
    with pytest.raises(ParityError, match=r"got shape \(10, 2\)"):
        parity_sample(booster, x[:10, :2])
