"""Recorded against replayed predictions: what must agree, what is only reported, and the tolerance."""

from __future__ import annotations

import math
from typing import Any

import pytest

from slipstream.replay.diff import Tolerance, diff_predictions
from slipstream.replay.exceptions import ToleranceError


def _p(event: str, score: float = 0.25, version: str = "3", **features: float) -> dict[str, Any]:
    return {
        "event_id": event,
        "prediction_id": f"{event}@{version}",
        "model_version": version,
        "score": score,
        "decision": score >= 0.5,
        "features": {"a": 1.0, "b": 2.0, **features},
        "feature_event_time": 5,
        "feature_freshness": {"customer": 1.0},
    }


def test_identical_predictions_do_not_differ() -> None:
    rows = [_p("1"), _p("2", 0.9)]
    summary = diff_predictions(rows, [dict(r) for r in reversed(rows)])
    assert (summary.matched, summary.failing, summary.differences) == (2, 0, [])


def test_each_kind_of_difference_is_counted() -> None:
    recorded = [_p("1"), _p("2"), _p("3"), _p("4"), _p("5")]
    replayed = [
        _p("1", 0.25 + 1e-6),
        _p("2", 0.75),
        _p("3", version="4"),
        _p("4", a=1.5),
        _p("6"),
    ]
    s = diff_predictions(recorded, replayed)
    assert (s.score, s.decision, s.model_version, s.features) == (2, 1, 1, 1)
    assert s.by_feature == {"a": 1}
    assert s.missing == ["5"] and s.extra == ["6"]
    assert s.failing == 4 + 2
    assert s.max_score_diff == pytest.approx(0.5)


def test_the_tolerance_is_inclusive_and_relative_for_features() -> None:
    tol = Tolerance(score_abs=1e-6, feature_abs=0.0, feature_rel=1e-9)
    s = diff_predictions([_p("1", b=1e6)], [_p("1", 0.25 + 1e-6, b=1e6 + 1e-4)], tol)
    assert s.failing == 0
    s = diff_predictions([_p("1", b=1e6)], [_p("1", b=1e6 + 1e-2)], tol)
    assert s.by_feature == {"b": 1}


def test_nan_equals_nan_and_a_missing_feature_differs() -> None:
    s = diff_predictions([_p("1", c=math.nan)], [_p("1", c=math.nan)])
    assert s.failing == 0
    recorded = _p("1")
    replayed = _p("1")
    del replayed["features"]["b"]
    s = diff_predictions([recorded], [replayed])
    assert s.differences[0].features == {"b": (2.0, None)}


def test_freshness_and_feature_time_are_reported_not_failing() -> None:
    replayed = _p("1")
    replayed["feature_event_time"] = 6
    replayed["feature_freshness"] = {"customer": 2.0}
    s = diff_predictions([_p("1")], [replayed])
    assert s.failing == 0
    assert s.timing_only == {"feature_event_time": 1, "feature_freshness": 1}


@pytest.mark.parametrize("bad", [-1e-9, math.inf, math.nan])
def test_a_bad_tolerance_is_refused(bad: float) -> None:
    with pytest.raises(ToleranceError, match="score_abs"):
        Tolerance(score_abs=bad)
