"""CBPE: on labels drawn from the scores themselves, the label-free estimate is close to the realised figures; the
calibration check catches scores that are not probabilities of the labels.

Tolerance: with labels Bernoulli(p) the estimate is (nearly) the *expected* realised figure, and one draw of labels
scatters around it. The test measures that scatter (the standard deviation of each realised figure over 200
independent label draws on the same scores) and requires the estimate to lie within 4 of those deviations of the
single draw's realised figure, and within 0.5 deviation of the mean over the draws (the estimator's own bias).
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, precision_score, recall_score, roc_auc_score

from slipstream.monitoring.estimate import calibration_check, expected_metrics
from slipstream.monitoring.exceptions import MonitoringError

N, DRAWS, THRESHOLD = 5000, 200, 0.3


def _realised(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    d = p >= THRESHOLD
    return {
        "precision": float(precision_score(y, d)),
        "recall": float(recall_score(y, d)),
        "auc_roc": float(roc_auc_score(y, p)),
        "average_precision": float(average_precision_score(y, p)),
    }


def test_estimate_is_close_to_realised_when_labels_are_drawn_from_the_scores() -> None:
    rng = np.random.default_rng(11)
    p = np.round(rng.beta(0.6, 4.0, N), 3)  # rounded: ties, as real scores have them
    estimate = expected_metrics(p, p >= THRESHOLD)
    assert estimate["kind"] == "estimated"
    draws = [_realised(rng.random(N) < p, p) for _ in range(DRAWS)]
    one = _realised(rng.random(N) < p, p)
    for name in ("precision", "recall", "auc_roc", "average_precision"):
        values = np.array([d[name] for d in draws])
        spread = float(values.std(ddof=1))
        assert 0 < spread < 0.03, name  # the figures are well defined at this size
        assert abs(estimate[name] - one[name]) <= 4 * spread, (name, estimate[name], one[name], spread)
        assert abs(estimate[name] - values.mean()) <= 0.5 * spread, (name, estimate[name], values.mean(), spread)


def test_estimate_is_deterministic_and_exact_on_a_small_case() -> None:
    p = np.array([0.9, 0.5, 0.5, 0.1])
    first = expected_metrics(p, p >= 0.5)
    assert first == expected_metrics(p.copy(), p >= 0.5)
    assert first["expected_positives"] == pytest.approx(2.0)
    assert first["precision"] == pytest.approx((0.9 + 0.5 + 0.5) / 3)
    assert first["recall"] == pytest.approx(1.9 / 2.0)
    # thresholds 0.9, 0.5 (tie: one step), 0.1: expected TP 0.9, 1.9, 2.0 of 2; flagged 1, 3, 4
    ap = 0.45 * 0.9 + 0.5 * (1.9 / 3) + 0.05 * (2.0 / 4)
    assert first["average_precision"] == pytest.approx(ap, abs=1e-12)
    # expected ROC points (FP/2, TP/2): (0.05, 0.45), (0.55, 0.95), (1, 1)
    auc = 0.05 * 0.45 / 2 + 0.5 * (0.45 + 0.95) / 2 + 0.45 * (0.95 + 1.0) / 2
    assert first["auc_roc"] == pytest.approx(auc, abs=1e-12)


def test_no_expected_positive_gives_no_ranking_figure() -> None:
    result = expected_metrics([0.0, 0.0], [False, False])
    assert result["average_precision"] is None and result["auc_roc"] is None and result["precision"] is None


def test_calibration_check_trusts_calibrated_scores_and_flags_the_others() -> None:
    rng = np.random.default_rng(5)
    p = rng.beta(0.6, 4.0, 4000)
    good = calibration_check(p, rng.random(len(p)) < p)
    assert good["trusted"] and abs(good["z"]) <= 3
    assert good["estimated_ap_on_labelled"] == pytest.approx(good["realised_ap_on_labelled"], abs=0.05)
    overconfident = calibration_check(p, rng.random(len(p)) < p**2)  # half as many frauds as the scores promise
    assert not overconfident["trusted"] and overconfident["z"] < -3
    assert overconfident["observed_positives"] < overconfident["expected_positives"]
    assert not calibration_check(p[:20], rng.random(20) < p[:20])["trusted"]  # too few labels to judge


def test_scores_that_are_not_probabilities_are_refused_naming_one() -> None:
    with pytest.raises(MonitoringError, match=r"1\.5"):
        expected_metrics([0.2, 1.5], [False, True])
    with pytest.raises(MonitoringError, match="differ in length"):
        calibration_check([0.2], [True, False])
