"""Histogram statistics against hand-computed values and against scipy on the raw samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from slipstream.monitoring.drift import statistics as st


def _binned(sample: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.bincount(np.searchsorted(edges, sample, side="right"), minlength=len(edges) + 1)


def test_psi_by_hand() -> None:
    # p = (0.5, 0.5), q = (0.25, 0.75): (0.25-0.5) ln(0.5) + (0.75-0.5) ln(1.5)
    expected = -0.25 * math.log(0.5) + 0.25 * math.log(1.5)
    assert st.psi([50, 50], [25, 75]) == pytest.approx(expected)
    assert st.psi([10, 10], [1, 1]) == 0.0


def test_psi_floors_empty_bins_at_epsilon() -> None:
    expected = (1e-4 - 0.5) * math.log(1e-4 / 0.5) + (1.0 - 0.5) * math.log(1.0 / 0.5)
    assert st.psi([5, 5], [0, 10]) == pytest.approx(expected)


def test_ks_and_js_and_chi2_by_hand() -> None:
    assert st.ks([1, 1, 2], [2, 1, 1]) == pytest.approx(0.25)
    m = np.array([0.375, 0.625])
    jsd = 0.5 * (0.5 * math.log(0.5 / m[0]) + 0.5 * math.log(0.5 / m[1]))
    jsd += 0.5 * (0.25 * math.log(0.25 / m[0]) + 0.75 * math.log(0.75 / m[1]))
    assert st.jensen_shannon([50, 50], [25, 75]) == pytest.approx(math.sqrt(jsd))
    # 2x2 table [[50, 50], [25, 75]]: expected counts 37.5/62.5 per row
    e = np.array([[37.5, 62.5], [37.5, 62.5]])
    o = np.array([[50, 50], [25, 75]])
    assert st.chi2([50, 50], [25, 75]) == pytest.approx(float(((o - e) ** 2 / e).sum()))
    assert st.chi2([5, 0], [7, 0]) == 0.0


def test_binned_ks_and_wasserstein_agree_with_scipy_on_raw_samples() -> None:
    rng = np.random.default_rng(1)
    ref, cur = rng.normal(0, 1, 50_000), rng.normal(0.3, 1.2, 50_000)
    edges = np.quantile(ref, np.linspace(0, 1, 51)[1:-1])
    r, c = _binned(ref, edges), _binned(cur, edges)
    exact_ks = stats.ks_2samp(ref, cur).statistic
    binned_ks = st.ks(r, c)
    largest_bin = max((r / r.sum()).max(), (c / c.sum()).max())
    assert binned_ks <= exact_ks + 1e-12
    assert exact_ks - binned_ks <= largest_bin  # the stated bound
    spread = edges[-1] - edges[0]
    # over the interior of the edges (what the binned W1 integrates), the exact ECDFs on a fine grid: within 2%
    grid = np.linspace(edges[0], edges[-1], 20_001)
    gap = np.abs(np.searchsorted(np.sort(ref), grid) / ref.size - np.searchsorted(np.sort(cur), grid) / cur.size)
    interior = float(np.sum((gap[1:] + gap[:-1]) / 2 * np.diff(grid))) / spread
    assert st.wasserstein(r, c, edges.tolist()) == pytest.approx(interior, rel=0.02)
    # and for a pure shift, against scipy's W1 on the whole line (the tails beyond the outer cuts are left out)
    shifted = ref + 0.3
    exact = stats.wasserstein_distance(ref, shifted) / spread
    assert st.wasserstein(r, _binned(shifted, edges), edges.tolist()) == pytest.approx(exact, rel=0.10)


def test_statistics_are_zero_on_identical_histograms_and_positive_otherwise() -> None:
    same = [10, 20, 30]
    for name in ("psi", "ks", "jensen_shannon", "chi2"):
        assert getattr(st, name)(same, same) == pytest.approx(0.0, abs=1e-12)
        assert getattr(st, name)(same, [30, 20, 10]) > 0
    assert st.wasserstein(same, same, [0.0, 1.0]) == 0.0


def test_primary_and_evidence_by_kind() -> None:
    assert st.PRIMARY == {"numeric": "psi", "binary": "jensen_shannon"}
    assert set(st.evidence("numeric", [1, 2, 3], [3, 2, 1], [0.0, 1.0])) == {"ks", "wasserstein"}
    assert set(st.evidence("binary", [1, 2], [2, 1], [0.5])) == {"chi2"}
    assert st.effective_n(100, 100) == 50.0
