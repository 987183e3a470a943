"""Calibration: leave-one-out nulls from the reference windows, the false-alarm rate on iid data, BH."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy import stats

from slipstream.models.reference import drift_reference
from slipstream.monitoring.drift.calibration import benjamini_hochberg, calibrate, merged_windows
from slipstream.monitoring.drift.statistics import primary
from slipstream.monitoring.exceptions import MonitoringError

DAY = 86_400 * 1_000_000
Q = 0.01
FEATURES = ["a", "b", "c"]


def _draw(rng: np.random.Generator, n: int, shift: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    x = np.c_[rng.lognormal(3, 1, n) * shift, rng.integers(0, 2, n), rng.poisson(3, n)].astype(float)
    return x, rng.beta(1, 20, n)


def _reference(days: int = 30, per_day: int = 2000, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    x, s = _draw(rng, days * per_day)
    times = np.repeat(np.arange(days) * DAY, per_day) + 1
    return drift_reference(x, s, times, FEATURES)


def _window_rejects(nulls: dict[str, Any], ref: dict[str, Any], x: np.ndarray, s: np.ndarray) -> list[bool]:
    ps = []
    for j, name in enumerate([*FEATURES, "score"]):
        null, column = nulls[name], x[:, j] if j < len(FEATURES) else s
        counts = np.bincount(np.searchsorted(null.edges, column, side="right"), minlength=null.bins)
        ps.append(null.p_value(primary(null.kind, null.counts, counts), len(column)))
    return benjamini_hochberg(ps, Q)


def test_per_window_false_alarm_rate_on_iid_data_is_at_most_about_q() -> None:
    ref = _reference()
    nulls = calibrate(ref, 86_400, 100)
    rng = np.random.default_rng(7)
    alarms = sum(any(_window_rejects(nulls, ref, *_draw(rng, 2000))) for _ in range(2000))
    # q = 1%: at most ~20 of 2000; allow the binomial's 3 sd
    assert alarms <= 2000 * Q + 3 * np.sqrt(2000 * Q)


def test_a_shifted_feature_is_detected() -> None:
    ref = _reference()
    nulls = calibrate(ref, 86_400, 100)
    rng = np.random.default_rng(8)
    rejected = _window_rejects(nulls, ref, *_draw(rng, 2000, shift=1.2))
    assert rejected[0] and not any(rejected[1:3])


def test_leave_one_out_merges_windows_and_refuses_bad_lengths() -> None:
    ref = _reference(days=8)
    groups, starts = merged_windows(ref, 2 * 86_400)
    assert groups == [0, 0, 1, 1, 2, 2, 3, 3] and starts == [0, 2 * DAY, 4 * DAY, 6 * DAY]
    assert calibrate(ref, 2 * 86_400, 100)["a"].k == 4
    with pytest.raises(MonitoringError, match="window_s=3600"):
        calibrate(ref, 3600, 100)
    with pytest.raises(MonitoringError, match="2 training windows"):
        calibrate(ref, 4 * 86_400, 100)


def test_a_near_constant_null_is_floored_at_sampling_noise() -> None:
    ref = _reference()
    null = calibrate(ref, 86_400, 100)["a"]
    assert null.phi >= 1.0
    # pure noise at the live size is never rejected at q / m: its 99th percentile stays under the threshold
    rng = np.random.default_rng(3)
    values = []
    for _ in range(300):
        x, _s = _draw(rng, 2000)
        counts = np.bincount(np.searchsorted(null.edges, x[:, 0], side="right"), minlength=null.bins)
        values.append(primary("numeric", null.counts, counts))
    assert np.quantile(values, 0.99) < null.threshold(Q / 4, 2000)
    assert null.p_value(null.threshold(Q / 4, 2000), 2000) == pytest.approx(Q / 4, rel=1e-6)


def test_benjamini_hochberg_matches_scipy() -> None:
    rng = np.random.default_rng(4)
    for _ in range(200):
        p = np.concatenate([rng.uniform(size=12), rng.uniform(0, 0.01, size=4)])
        adjusted = stats.false_discovery_control(p)
        assert benjamini_hochberg(p.tolist(), 0.05) == (adjusted <= 0.05).tolist()
    assert benjamini_hochberg([], 0.1) == []
    assert benjamini_hochberg([0.01, 0.02, 0.03, 0.5], 0.1) == [True, True, True, False]
