"""Thresholds from no-drift data: the training period's own windows, each against the rest (leave-one-out).

For every subject, :func:`calibrate` merges the reference's per-window counts (``reference["drift"]``, see
:mod:`slipstream.models.reference`) into windows of the monitor's length, and computes the primary statistic of each
window against the totals minus that window: ``k`` draws of the statistic's null distribution that carry the data's
real day-to-day variation (weekends, paydays), not only sampling noise.

The null model is an over-dispersed chi-squared. Both primaries are, for small differences, chi-squared divergences:
with n_eff = 1 / (1/n_ref + 1/n_window) and K bins, X = n_eff * PSI / (K - 1) (numeric) or 8 n_eff JSD / (K - 1)
(binary, JSD the divergence = distance squared) is chi2(K - 1) / (K - 1) under pure sampling noise. Real windows
vary more than that (a day is not an iid draw of the whole period), so X ~ phi chi2(K - 1) / (K - 1) with an
over-dispersion phi, estimated as the mean of the k training windows' X (leave-one-out) and floored at 1: the
floor is pure sampling noise, so a subject whose training windows were nearly identical does not alarm on noise.
A new window's X / phi_hat then follows F(K - 1, k (K - 1)) under that model: the p-value
(:meth:`SubjectNull.p_value`) is its upper tail. The F's heavier tail is what a handful of windows (7 days of
training) costs; with 30 windows it is close to the chi-squared. Scaling by n_eff makes the p-value valid for a live
window of another size than the training ones. (A log-normal fit on log(stat) was tried first: for a binary
subject, 1 degree of freedom, log(stat) is far from normal, its sd ~2, and the thresholds were useless.)

:func:`benjamini_hochberg` controls the false discovery rate across subjects at level q; under the global null (no
subject moved) it controls the chance of any rejection, so a window alarms falsely with probability <= q.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from scipy import stats

from slipstream.monitoring.drift.statistics import PRIMARY, effective_n, primary
from slipstream.monitoring.exceptions import MonitoringError

MIN_WINDOWS: Final = 3  # fewer null draws say next to nothing of the over-dispersion


@dataclass(frozen=True, slots=True)
class SubjectNull:
    """A subject's calibrated null: its kind, edges, reference totals, over-dispersion phi (>= 1) over k windows."""

    subject: str
    kind: str
    edges: tuple[float, ...]
    counts: tuple[int, ...]
    phi: float
    k: int

    @property
    def statistic(self) -> str:
        return PRIMARY[self.kind]

    @property
    def bins(self) -> int:
        return len(self.edges) + 1

    @property
    def n(self) -> int:
        return sum(self.counts)

    def p_value(self, value: float, n_window: int) -> float:
        """The upper-tail p-value of ``value`` for a window of ``n_window`` observations (module docstring)."""
        dof = self.bins - 1
        if dof < 1:
            return 1.0
        x = scaled(self.kind, value, dof, effective_n(self.n, n_window))
        return float(stats.f.sf(x / self.phi, dof, self.k * dof))

    def threshold(self, p: float, n_window: int) -> float:
        """The value whose :meth:`p_value` is ``p`` (0.0 for a subject of a single bin: it cannot move)."""
        dof = self.bins - 1
        n_eff = effective_n(self.n, n_window)
        if dof < 1 or n_eff <= 0:
            return 0.0
        x = float(stats.f.isf(p, dof, self.k * dof)) * self.phi * dof / n_eff
        return x if self.kind == "numeric" else math.sqrt(x / 8.0)


def scaled(kind: str, value: float, dof: int, n_eff: float) -> float:
    """X of the module docstring: the statistic as a chi2(dof) / dof variable under sampling noise."""
    divergence = value if kind == "numeric" else 8.0 * value * value
    return n_eff * divergence / dof


def merged_windows(reference: Mapping[str, Any], window_s: int) -> tuple[list[int], list[int]]:
    """The reference's window indexes grouped into monitor windows: (group of each reference window, group starts)."""
    granularity = int(reference["granularity_s"])
    if window_s <= 0 or window_s % granularity != 0:
        msg = f"window_s={window_s!r} must be a positive multiple of the reference's granularity_s={granularity}"
        raise MonitoringError(msg)
    step = window_s * 1_000_000
    starts = [int(s) // step * step for s in reference["window_starts"]]
    unique = sorted(set(starts))
    where = {s: i for i, s in enumerate(unique)}
    return [where[s] for s in starts], unique


def null_values(subject: Mapping[str, Any], groups: Sequence[int], n_groups: int, min_n: int) -> list[float]:
    """X (:func:`scaled`) of every merged window (>= ``min_n`` observations) against the totals minus it."""
    k = len(subject["counts"])
    merged = np.zeros((n_groups, k), dtype=np.int64)
    rows = np.asarray(subject["window_counts"], dtype=np.int64).reshape(-1, k)
    np.add.at(merged, np.asarray(groups, dtype=np.int64), rows)
    totals = np.asarray(subject["counts"], dtype=np.int64)
    kind, dof, n = str(subject["kind"]), max(k - 1, 1), int(totals.sum())
    return [
        scaled(kind, primary(kind, totals - w, w), dof, effective_n(n - int(w.sum()), int(w.sum())))
        for w in merged
        if min_n <= w.sum() < n
    ]


def calibrate(reference: Mapping[str, Any], window_s: int, min_window_n: int) -> dict[str, SubjectNull]:
    """Every subject's :class:`SubjectNull`; :class:`MonitoringError` if the window length does not divide into the
    reference's granularity or fewer than :data:`MIN_WINDOWS` training windows are large enough."""
    groups, starts = merged_windows(reference, window_s)
    out: dict[str, SubjectNull] = {}
    for name, subject in reference["subjects"].items():
        values = null_values(subject, groups, len(starts), min_window_n)
        if len(values) < MIN_WINDOWS:
            msg = (
                f"{name}: {len(values)} training windows of {window_s}s with >= {min_window_n} rows; calibration "
                f"needs {MIN_WINDOWS} (a longer training period, shorter windows or a lower min_window_n)"
            )
            raise MonitoringError(msg)
        out[name] = SubjectNull(
            subject=name,
            kind=str(subject["kind"]),
            edges=tuple(float(e) for e in subject["edges"]),
            counts=tuple(int(c) for c in subject["counts"]),
            phi=max(float(np.mean(values)), 1.0),
            k=len(values),
        )
    return out


def benjamini_hochberg(p_values: Sequence[float], q: float) -> list[bool]:
    """Which hypotheses Benjamini–Hochberg rejects at FDR level ``q`` (the largest i with p_(i) <= i q / m, and
    every p at or below it)."""
    m = len(p_values)
    if m == 0:
        return []
    order = sorted(p_values)
    cut = -1.0
    for i, p in enumerate(order, start=1):
        if p <= i * q / m:
            cut = p
    return [p <= cut for p in p_values]


__all__ = ["MIN_WINDOWS", "SubjectNull", "benjamini_hochberg", "calibrate", "merged_windows", "null_values", "scaled"]
