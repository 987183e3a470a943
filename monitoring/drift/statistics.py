"""Distances between two histograms on the same edges (a reference and a window), and their sampling-noise nulls.

Every function takes count vectors (``ref``, ``cur``: non-negative, same length, one entry per bin; bins as in
:mod:`slipstream.models.reference`: ``len(edges) + 1`` with open ends). Pure numpy/scipy, no state.

* numeric subjects: :func:`psi` (primary), :func:`ks` and :func:`wasserstein` (evidence);
* binary subjects: :func:`jensen_shannon` (primary) and :func:`chi2` (evidence).

:func:`effective_n` is the two-sample size the calibration scales the primaries by
(:mod:`slipstream.monitoring.drift.calibration`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import stats
from scipy.spatial.distance import jensenshannon

F64 = npt.NDArray[np.float64]
Counts = Sequence[int] | Sequence[float] | npt.NDArray[np.int64] | F64

PSI_EPSILON: Final = 1e-4  # proportion given to an empty bin (on either side) so that PSI stays finite
PRIMARY: Final = {"numeric": "psi", "binary": "jensen_shannon"}


def _proportions(counts: Counts) -> F64:
    array = np.asarray(counts, dtype=np.float64)
    total = array.sum()
    return array / total if total > 0 else np.zeros_like(array)


def psi(ref: Counts, cur: Counts, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index sum((q - p) ln(q / p)), each proportion floored at ``epsilon``."""
    p = np.maximum(_proportions(ref), epsilon)
    q = np.maximum(_proportions(cur), epsilon)
    return float(np.sum((q - p) * np.log(q / p)))


def ks(ref: Counts, cur: Counts) -> float:
    """Kolmogorov–Smirnov distance of the binned CDFs: max |F - G| over the edges (a lower bound of the exact one,
    short of it by at most the largest bin's proportion)."""
    return float(np.max(np.abs(np.cumsum(_proportions(ref)) - np.cumsum(_proportions(cur)))))


def wasserstein(ref: Counts, cur: Counts, edges: Sequence[float]) -> float:
    """Wasserstein-1 of the binned CDFs over the interior of the edges, divided by the reference's spread.

    W = sum_i (|F - G|(e_i) + |F - G|(e_{i+1})) / 2 (e_{i+1} - e_i) for consecutive edges: the CDFs are known only
    at the edges, the trapezoid rule integrates between them (the open end bins contribute nothing, having no
    width). The spread is ``e_k - e_0``, the distance between the first and last quantile cut of the reference (its
    central 90% with 20 bins), so the result is unitless: 0.1 means "moved by a tenth of the reference's central
    range". 0.0 with fewer than two edges.
    """
    if len(edges) < 2:
        return 0.0
    e = np.asarray(edges, dtype=np.float64)
    gap = np.abs(np.cumsum(_proportions(ref)) - np.cumsum(_proportions(cur)))[:-1]  # F(e_i) - G(e_i), i = 0..k
    spread = float(e[-1] - e[0])
    return float(np.sum((gap[:-1] + gap[1:]) / 2 * np.diff(e)) / spread) if spread > 0 else 0.0


def jensen_shannon(ref: Counts, cur: Counts) -> float:
    """Jensen–Shannon distance (natural log, so in [0, sqrt(ln 2)]): the square root of the JS divergence."""
    p, q = _proportions(ref), _proportions(cur)
    if p.sum() == 0 or q.sum() == 0:
        return 0.0
    return float(jensenshannon(p, q))


def chi2(ref: Counts, cur: Counts) -> float:
    """Pearson's chi-squared statistic of the 2 x k contingency table (bins empty on both sides dropped, no Yates
    correction); 0.0 when fewer than two bins are occupied."""
    table = np.vstack([np.asarray(ref, dtype=np.float64), np.asarray(cur, dtype=np.float64)])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0
    return float(stats.chi2_contingency(table, correction=False).statistic)


def primary(kind: str, ref: Counts, cur: Counts) -> float:
    """The statistic alarms are decided on: PSI for a numeric subject, Jensen–Shannon distance for a binary one."""
    return psi(ref, cur) if kind == "numeric" else jensen_shannon(ref, cur)


def evidence(kind: str, ref: Counts, cur: Counts, edges: Sequence[float]) -> dict[str, float]:
    """The other statistics of a subject, by name."""
    if kind == "numeric":
        return {"ks": ks(ref, cur), "wasserstein": wasserstein(ref, cur, edges)}
    return {"chi2": chi2(ref, cur)}


def effective_n(n_ref: float, n_cur: float) -> float:
    """1 / (1/n_ref + 1/n_cur): the sample size of a two-sample comparison (0 if either side is empty)."""
    return 1.0 / (1.0 / n_ref + 1.0 / n_cur) if n_ref > 0 and n_cur > 0 else 0.0


__all__ = [
    "PRIMARY",
    "PSI_EPSILON",
    "chi2",
    "effective_n",
    "evidence",
    "jensen_shannon",
    "ks",
    "primary",
    "psi",
    "wasserstein",
]
