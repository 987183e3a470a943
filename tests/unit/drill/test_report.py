"""The drill's report and checks, from records shaped like the topics' contracts: periods, detection delay, the
head-to-head after a promotion, the bad promotion's rollback, and which checks fail."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from slipstream.demo.timeline import DAY_US, Timeline
from slipstream.drill.checks import checks
from slipstream.drill.data import DrillData
from slipstream.drill.report import LOOP_ACTOR, drill_report

LIVE = datetime(2018, 6, 12, tzinfo=UTC)


def _us(t: datetime) -> int:
    return int(t.timestamp() * 1_000_000)


def _data(drift_day: float | None) -> DrillData:
    timeline = Timeline(
        ("2018-05-08", "2018-05-29"), ("2018-05-29", "2018-06-05"), _us(LIVE) - 37 * DAY_US, _us(LIVE), 0
    )
    labels = pd.DataFrame(
        {
            "transaction_id": [1, 2],
            "tx_event_time": [LIVE + timedelta(days=11), LIVE + timedelta(days=12)],
            "event_time": [LIVE + timedelta(days=18), LIVE + timedelta(days=19)],
            "is_fraud": [True, False],
        }
    )
    drift = None if drift_day is None else _us(LIVE + timedelta(days=drift_day))
    return DrillData(pd.DataFrame(), labels, timeline, drift, _us(LIVE + timedelta(days=40)))


def _alarm(day: float, kind: str = "FEATURE_DRIFT") -> dict[str, Any]:
    end = LIVE + timedelta(days=day)
    return {
        "alarm_id": f"fraud@1:{kind}:x:{_us(end)}",
        "kind": kind,
        "subject": "TX_AMOUNT",
        "statistic": "psi",
        "value": 0.4,
        "threshold": 0.1,
        "p_value": 1e-9,
        "model_version": "1",
        "window_end": end,
        "evidence": [{"subject": "TX_AMOUNT", "moved": True}],
    }


def _event(action: str, version: str, day: float | None, previous: str | None = None, actor: str = LOOP_ACTOR) -> Any:
    return {
        "action": action,
        "version": version,
        "previous_version": previous,
        "alias": "champion",
        "actor": actor,
        "reason": f"{action.lower()} for the test",
        "evidence": json.dumps({"retrain_id": "fraud:retrain:1"}),
        "stream_time": None if day is None else LIVE + timedelta(days=day),
    }


def _outcomes(version: str, first_day: int, days: int, good: bool) -> list[dict[str, Any]]:
    rows = []
    for d in range(first_day, first_day + days):
        for i in range(40):
            fraud = i % 10 == 0
            score = (0.9 if fraud else 0.1) if good else (0.1 if fraud else 0.5 + i / 100)
            rows.append(
                {
                    "status": "LABELLED",
                    "event_id": f"{d}-{i}",
                    "model_version": version,
                    "customer_id": i,
                    "event_time": LIVE + timedelta(days=d, minutes=i),
                    "score": score,
                    "label": fraud,
                }
            )
    return rows


def test_a_detected_drift_a_promotion_and_a_better_model_pass_every_check() -> None:
    records = {
        "drift": [_alarm(1), _alarm(19, "ERROR_RATE"), _alarm(20)],
        "model-events": [
            _event("PROMOTED", "1", None, actor="slipstream"),
            _event("RETRAIN_STARTED", "1", 20),
            _event("RETRAINED", "2", 20, "1"),
            _event("PROMOTED", "2", 30, "1"),
        ],
        "outcomes": _outcomes("1", 0, 37, good=False) + _outcomes("2", 30, 7, good=True),
    }
    report = drill_report(records, _data(10.0))
    assert report["false_alarms_before_drift"] == 1
    assert report["detection_delay_days"] == 9.0
    assert report["detection_deadline_days"] == 11.0  # the first fraud after the drift is labelled 8 days after it
    assert report["retrains"] == 1
    assert report["promotion_delay_days"] == 20.0
    assert set(report["periods"]) == {"before_drift", "after_drift", "after_promotion"}
    assert report["periods"]["after_promotion"]["versions"]["2"]["average_precision"] == 1.0
    h2h = report["after_promotion_7d"]
    assert h2h["events"] == 7 * 40 and h2h["new_better"]
    result = checks(report, scenario="new-fraud-pattern", bad=False)
    assert not result["no_alarm_before_drift"]["passed"]
    assert result["detected_in_time"]["passed"] and result["promoted_within_21_days"]["passed"]
    assert result["better_after_promotion"]["passed"]


def test_without_drift_any_alarm_fails_and_a_rolled_back_bad_promotion_passes() -> None:
    records = {
        "drift": [_alarm(5)],
        "model-events": [
            _event("PROMOTED", "1", None, actor="slipstream"),
            _event("PROMOTED", "2", 7, "1", actor="drill --bad-promotion"),
            _event("ROLLED_BACK", "1", 16, "2"),
        ],
        "outcomes": _outcomes("1", 0, 20, good=True),
    }
    report = drill_report(records, _data(None), bad_version="2")
    assert report["bad_promotion"]["rolled_back"] and report["bad_promotion"]["days_to_rollback"] == 9.0
    result = checks(report, scenario="none", bad=True)
    assert not result["no_alarm_without_drift"]["passed"]
    assert result["bad_promotion_rolled_back"]["passed"]
    assert "detected_in_time" not in result


def test_a_promotion_of_a_worse_model_fails_the_covariate_check() -> None:
    records = {
        "drift": [_alarm(12)],
        "model-events": [_event("PROMOTED", "1", None, actor="slipstream"), _event("PROMOTED", "2", 20, "1")],
        "outcomes": _outcomes("1", 0, 30, good=True) + _outcomes("2", 20, 10, good=False),
    }
    report = drill_report(records, _data(10.0))
    result = checks(report, scenario="covariate-shift", bad=False)
    assert result["feature_drift_alarm"]["passed"]
    assert not result["no_promotion_of_a_worse_model"]["passed"]


def test_with_every_score_an_unreported_mature_event_counts_as_genuine_and_the_last_week_is_left_out() -> None:
    """Realistic delays: frauds are reported in days, genuine transactions confirmed at 30. The report pairs every
    score (predictions and the shadow's) with the labels known, as the loop's gates do."""
    scores, outcomes = [], []
    for d in range(40):
        for i in range(20):
            event_id, fraud = f"{d}-{i}", i == 0
            for version, good in (("1", False), ("2", True)):
                score = (0.9 if fraud else 0.1 + i / 100) if good else (0.05 if fraud else 0.1 + i / 100)
                scores.append(
                    {
                        "event_id": event_id,
                        "model_version": version,
                        "score": score,
                        "customer_id": i,
                        "event_time": LIVE + timedelta(days=d, minutes=i),
                    }
                )
            if fraud:
                outcomes.append({"status": "LABELLED", "event_id": event_id, "label": True})
    records = {"scores": scores, "outcomes": outcomes, "drift": [], "model-events": [_event("PROMOTED", "2", 10, "1")]}
    report = drill_report(records, _data(None))
    versions = report["periods"]["before_drift"]["versions"]
    assert versions["2"]["n"] == versions["1"]["n"] == 33 * 20  # the drill's last 7 days (of 40) are left out
    assert versions["2"]["positives"] == 33 and versions["2"]["average_precision"] == 1.0
    assert versions["1"]["average_precision"] < 0.2
