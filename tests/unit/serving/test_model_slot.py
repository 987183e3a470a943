"""The model slot's checks before a swap, with real ONNX models (no registry): refused models never serve."""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pytest

from slipstream.features.definitions.fraud import FRAUD
from slipstream.models.onnx_export import OnnxScorer, export_onnx, parity_sample
from slipstream.models.registry import LoadedModel
from slipstream.serving.exceptions import ModelRefusedError, ModelUnavailableError
from slipstream.serving.model_slot import ModelSlot, SwapRecord


def _loaded(version: str, names: tuple[str, ...] = FRAUD.model_input, seed: int = 0, **card: Any) -> LoadedModel:
    rng = np.random.default_rng(seed)
    x = rng.random((400, len(names)))
    y = (x[:, 0] + 0.1 * rng.random(400) > 0.6).astype(int)
    params = {"objective": "binary", "num_leaves": 7, "verbose": -1, "num_threads": 1, "seed": seed}
    booster = lgb.train(params, lgb.Dataset(x, y, feature_name=list(names)), 8)
    onnx_bytes = export_onnx(booster, names)
    full_card = {"kind": "binary", "parity_sample": parity_sample(booster, x), **card}
    return LoadedModel("fraud", version, onnx_bytes, OnnxScorer(onnx_bytes), names, 0.5, full_card)


def test_nothing_serves_before_the_first_install() -> None:
    slot = ModelSlot("fraud", FRAUD.feature_names)
    assert not slot.loaded
    with pytest.raises(ModelUnavailableError, match="no 'fraud' model is loaded"):
        _ = slot.current


def test_install_swaps_atomically_and_a_held_model_stays_usable() -> None:
    seen: list[tuple[SwapRecord, str | None]] = []
    slot = ModelSlot("fraud", FRAUD.feature_names, on_swap=lambda r, m: seen.append((r, m and m.version)))
    first = slot.install(_loaded("1"))
    held = slot.current  # what an in-flight request holds
    slot.install(_loaded("2", seed=1))
    assert slot.current.version == "2" and held is first and held.version == "1"
    row = np.zeros((1, len(FRAUD.model_input)))
    assert 0.0 <= held.scorer.predict(row)[0] <= 1.0  # the old model still answers its request
    assert [(r.version, r.accepted, v) for r, v in seen] == [("1", True, "1"), ("2", True, "2")]


@pytest.mark.parametrize(
    ("candidate", "reason"),
    [
        (lambda: _loaded("3", names=("a", "b", "c")), "needs features the scorer does not compute: ['a', 'b', 'c']"),
        (lambda: _loaded("3", parity_sample={"x": [[0.0] * 15], "expected": [7.0]}), "failed its parity check"),
        (lambda: _loaded("3", parity_sample=None), "failed its parity check"),
    ],
)
def test_a_model_that_fails_a_check_is_refused_and_the_current_one_serves(candidate: Any, reason: str) -> None:
    slot = ModelSlot("fraud", FRAUD.feature_names)
    slot.install(_loaded("1"))
    with pytest.raises(ModelRefusedError, match=reason.replace("[", r"\[").replace("]", r"\]")):
        slot.install(candidate())
    assert slot.current.version == "1"
    assert [(r.version, r.accepted) for r in slot.history] == [("1", True), ("3", False)]


def test_a_model_of_another_name_is_refused() -> None:
    slot = ModelSlot("reco", FRAUD.feature_names)
    with pytest.raises(ModelRefusedError, match="is not a 'reco' model"):
        slot.install(_loaded("1"))


def test_a_model_of_another_kind_is_refused() -> None:
    slot = ModelSlot("fraud", FRAUD.feature_names, kind="ranking")
    with pytest.raises(ModelRefusedError, match="is a binary model; this endpoint serves ranking models"):
        slot.install(_loaded("1"))


def test_the_model_info_gauge_follows_each_endpoint_apart() -> None:
    from slipstream.serving.metrics import ScorerMetrics

    metrics = ScorerMetrics()
    fraud = ModelSlot("fraud", FRAUD.feature_names, on_swap=lambda r, m: metrics.record_swap("fraud", r, m))
    other = ModelSlot("fraud", FRAUD.feature_names, on_swap=lambda r, m: metrics.record_swap("other", r, m))
    fraud.install(_loaded("1"))
    other.install(_loaded("7"))
    fraud.install(_loaded("2", seed=1))
    value = metrics.registry.get_sample_value
    assert value("slipstream_model_info", {"endpoint": "fraud", "model": "fraud", "version": "2"}) == 1
    assert value("slipstream_model_info", {"endpoint": "fraud", "model": "fraud", "version": "1"}) == 0
    assert value("slipstream_model_info", {"endpoint": "other", "model": "fraud", "version": "7"}) == 1
