"""What a drill must show, by scenario, checked against its report: the issue's acceptance, as code."""

from __future__ import annotations

from typing import Any

PROMOTION_DAYS = 21.0


def _check(passed: bool, detail: str) -> dict[str, Any]:
    return {"passed": bool(passed), "detail": detail}


def checks(report: dict[str, Any], *, scenario: str | None, bad: bool) -> dict[str, dict[str, Any]]:
    """``scenario`` None: a user's stream (with or without a drift start in its timeline)."""
    out: dict[str, dict[str, Any]] = {}
    drift = report["timeline"]["drift_start"]
    if drift is None:
        n = len(report["alarms"])
        out["no_alarm_without_drift"] = _check(n == 0, f"{n} alarms over the live days")
    else:
        n = report["false_alarms_before_drift"]
        out["no_alarm_before_drift"] = _check(n == 0, f"{n} alarms before the drift start {drift}")
    if scenario in ("new-fraud-pattern", None) and drift is not None:
        delay, deadline = report.get("detection_delay_days"), report.get("detection_deadline_days")
        out["detected_in_time"] = _check(
            delay is not None and deadline is not None and delay <= deadline,
            f"first alarm {delay} days after the drift start; deadline {deadline} days (first fraud label + 3)",
        )
        promoted = report.get("promotion_delay_days")
        out["promoted_within_21_days"] = _check(
            promoted is not None and promoted <= PROMOTION_DAYS,
            f"the loop's first promotion after the drift came {promoted} days after it",
        )
        h2h = report.get("after_promotion_7d")
        out["better_after_promotion"] = _check(
            bool(h2h and h2h["new_better"]),
            "no promotion to compare"
            if not h2h
            else (
                f"7 days after the promotion, on {h2h['events']:,} shared events: v{h2h['new_version']} AP "
                f"{h2h[h2h['new_version']]['average_precision']} vs v{h2h['old_version']} AP "
                f"{h2h[h2h['old_version']]['average_precision']}"
            ),
        )
    if scenario == "covariate-shift":
        feature = [a for a in report["alarms"] if a["kind"] == "FEATURE_DRIFT"]
        out["feature_drift_alarm"] = _check(bool(feature), f"{len(feature)} feature-drift alarms")
        h2h = report.get("after_promotion_7d")
        out["no_promotion_of_a_worse_model"] = _check(
            h2h is None or h2h["new_better"],
            "no promotion after the drift" if h2h is None else f"promoted v{h2h['new_version']}: {h2h}",
        )
    if bad:
        b = report.get("bad_promotion") or {}
        out["bad_promotion_rolled_back"] = _check(
            bool(b.get("rolled_back")),
            f"v{b.get('version')} promoted {b.get('promoted_at')}, rolled back {b.get('rolled_back_at')} "
            f"({b.get('days_to_rollback')} days): {b.get('reason')}",
        )
    return out
