"""A label-free estimate of a classifier's performance from its own scores (CBPE-style), and the check that says
whether the scores deserve that trust.

Confidence-based performance estimation (NannyML's CBPE) reads a calibrated score ``p`` as the probability that the
event is positive, so ``p`` is the *expected* label. Summed over the predictions still awaiting their labels:

* expected true positives at the model's threshold ``E[TP] = sum(p | decision)``, expected false positives
  ``sum(1 - p | decision)``, expected positives ``sum(p)``; expected precision ``E[TP] / flagged``, expected recall
  ``E[TP] / sum(p)``;
* the expected ROC curve: scores in descending order, every tied score one threshold (as scikit-learn does), the
  cumulative ``sum(p)`` and ``sum(1 - p)`` as expected TP and FP counts; expected AUC is its trapezoid area;
* expected average precision: ``sum over thresholds of (expected recall gained) x (expected precision)``.

Everything is a deterministic sum over the score order: no sampling, no randomness, the same input gives the same
output. Each result carries ``"kind": "estimated"`` so no one reads it as realised.

The estimate is only as good as the calibration: :func:`calibration_check` compares, on predictions whose labels did
arrive, the expected positives ``sum(p)`` with the observed positives (a z-score under the Bernoulli(p) model) and
also runs the estimator on those labelled predictions beside their realised AP (a back-test). It cannot see a shift
between the labelled and the unlabelled part (labels of frauds arriving faster than those of genuine payments, say).
"""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from slipstream.models.metrics import average_precision
from slipstream.monitoring.exceptions import MonitoringError

F64 = npt.NDArray[np.float64]
#: |observed - expected positives| / sqrt(sum p(1-p)) above this: the scores are not calibrated on the labelled part.
MAX_CALIBRATION_Z: Final = 3.0
#: Fewer labelled predictions than this: too few to judge the calibration.
MIN_CALIBRATION_N: Final = 100


def _probabilities(scores: npt.ArrayLike) -> F64:
    p = np.asarray(scores, dtype=np.float64).ravel()
    bad = p[~((p >= 0.0) & (p <= 1.0))]  # NaN is bad too
    if len(bad):
        msg = f"CBPE needs scores that are probabilities in [0, 1], got {bad[0]!r} among {len(bad)} out of range"
        raise MonitoringError(msg)
    return p


def expected_metrics(scores: npt.ArrayLike, decisions: npt.ArrayLike) -> dict[str, Any]:
    """The CBPE estimate for predictions without labels: ``n``, expected positives, expected precision and recall at
    the threshold the ``decisions`` were made with, expected AUC ROC and AP. A figure that needs an expected positive
    (or negative) is ``None`` when the scores give none (all 0, or all 1)."""
    p = _probabilities(scores)
    flagged = np.asarray(decisions, dtype=bool).ravel()
    if len(flagged) != len(p):
        msg = f"scores and decisions differ in length: {len(p)} != {len(flagged)}"
        raise MonitoringError(msg)
    n = len(p)
    expected_pos = float(p.sum())
    expected_neg = float(n - expected_pos)
    e_tp = float(p[flagged].sum())
    n_flagged = int(flagged.sum())
    result: dict[str, Any] = {
        "kind": "estimated",
        "n": n,
        "expected_positives": expected_pos,
        "flagged": n_flagged,
        "precision": e_tp / n_flagged if n_flagged else None,
        "recall": e_tp / expected_pos if expected_pos > 0 else None,
        "auc_roc": None,
        "average_precision": None,
    }
    if n == 0 or expected_pos <= 0:
        return result
    order = np.argsort(-p, kind="stable")
    ps = p[order]
    last_of_tie = np.r_[ps[1:] != ps[:-1], True]
    tp = np.cumsum(ps)[last_of_tie]
    flagged_at = (np.arange(n) + 1)[last_of_tie].astype(np.float64)
    result["average_precision"] = float(np.sum(np.diff(np.r_[0.0, tp]) / expected_pos * tp / flagged_at))
    if expected_neg > 0:
        fp = flagged_at - tp  # cumulative sum of (1 - p) over the same thresholds
        tpr, fpr = np.r_[0.0, tp / expected_pos], np.r_[0.0, fp / expected_neg]
        result["auc_roc"] = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))
    return result


def calibration_check(scores: npt.ArrayLike, labels: npt.ArrayLike) -> dict[str, Any]:
    """How well the scores predicted the labels that arrived: expected vs observed positives, their z-score, and the
    estimator's AP on the labelled predictions beside the realised AP (a back-test). ``trusted`` is true when there
    are at least :data:`MIN_CALIBRATION_N` labelled predictions and ``|z| <= MAX_CALIBRATION_Z``."""
    p = _probabilities(scores)
    y = np.asarray(labels, dtype=bool).ravel()
    if len(y) != len(p):
        msg = f"scores and labels differ in length: {len(p)} != {len(y)}"
        raise MonitoringError(msg)
    expected = float(p.sum())
    observed = int(y.sum())
    spread = math.sqrt(float(np.sum(p * (1.0 - p))))
    z = (observed - expected) / spread if spread > 0 else (0.0 if observed == expected else math.inf)
    backtest = expected_metrics(p, np.zeros(len(p), dtype=bool))["average_precision"] if len(p) else None
    realised = average_precision(y, p) if observed else None
    return {
        "n": len(p),
        "expected_positives": expected,
        "observed_positives": observed,
        "z": z,
        "estimated_ap_on_labelled": backtest,
        "realised_ap_on_labelled": realised,
        "trusted": len(p) >= MIN_CALIBRATION_N and abs(z) <= MAX_CALIBRATION_Z,
    }


__all__ = ["MAX_CALIBRATION_Z", "MIN_CALIBRATION_N", "calibration_check", "expected_metrics"]
