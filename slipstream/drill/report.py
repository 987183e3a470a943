"""A drill's report, pure: from the records of ``drift``, ``model-events`` and ``outcomes`` and the drill's
timeline, what the loop saw and did, and how every model version did per period.

* ``alarms``: every drift alarm (stream time = its window end: a window's alarm is raised when the window closes; a
  change detector's when the observation that tripped it arrived), kind, subject, statistic, threshold, evidence.
* ``false_alarms_before_drift``: alarms raised before the drift started (all of them with no drift).
* ``detection_delay_days``: from the drift start to the first alarm after it; ``detection_deadline_days``: the
  label delay of the first fraud after the drift start plus 3 days (when the first labels of a new pattern can have
  arrived, plus the issue's allowance).
* ``decisions``: every decision of the loop (and every promotion or rollback, by whoever made it) in stream time.
* ``periods``: before the drift, after it under the old champion, after the loop's first promotion after the drift:
  per version, the realised average precision and card precision@100 over its labelled predictions of the period
  (champion predictions and challenger scores from the shadow alike).
* ``after_promotion_7d``: the promoted version against the version it replaced on the *same* events (the replaced
  one is shadowed after a promotion) over the 7 days after the promotion.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from slipstream.demo.timeline import DAY_US, iso, us_of
from slipstream.models.metrics import average_precision, card_precision_at_k
from slipstream.monitoring.figures import micros

if TYPE_CHECKING:
    from slipstream.drill.data import DrillData

DECISIONS = frozenset(
    {
        "RETRAIN_STARTED",
        "RETRAINED",
        "RETRAIN_FAILED",
        "PROMOTION_HELD",
        "CHALLENGER_REJECTED",
        "PROMOTED",
        "ROLLED_BACK",
        "CHALLENGER_SET",
        "CHALLENGER_REMOVED",
    }
)
LOOP_ACTOR = "slipstream loop"
MATURITY_DAYS = 7  # scores of the drill's last week are left out: their labels have not all come


def _days(us: int) -> float:
    return round(us / DAY_US, 2)


def _evidence(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _metrics(rows: list[tuple[int, int, float, int]]) -> dict[str, Any]:
    """(event µs, customer, score, label) rows → n, positives, AP, card precision@100 (per day, averaged)."""
    if not rows:
        return {"n": 0, "positives": 0, "average_precision": None, "card_precision_at_100": None}
    t = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    customers = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
    scores = np.fromiter((r[2] for r in rows), dtype=np.float64, count=len(rows))
    y = np.fromiter((r[3] for r in rows), dtype=np.int64, count=len(rows))
    positives = int(y.sum())
    ap = average_precision(y, scores) if 0 < positives < len(y) else None
    cp = card_precision_at_k(t // DAY_US, customers, y, scores, 100).mean if positives else None
    return {
        "n": len(rows),
        "positives": positives,
        "average_precision": None if ap is None else round(float(ap), 4),
        "card_precision_at_100": None if cp is None else round(float(cp), 4),
    }


def _scored(
    records: Mapping[str, Iterable[Mapping[str, Any]]], mature_before_us: int
) -> dict[str, dict[str, tuple[int, int, float, int]]]:
    """version → event id → (event µs, customer, score, label).

    With ``scores`` (every champion prediction and challenger score): each scored event older than
    ``mature_before_us``, labelled as its LABELLED outcome says, else genuine — the known-labels protocol the loop's
    gates use (with realistic delays genuine transactions are confirmed only at 30 days; a late fraud report after the
    drill's end counts as genuine). Without them: the LABELLED outcomes themselves."""
    out: dict[str, dict[str, tuple[int, int, float, int]]] = defaultdict(dict)
    outcomes = records.get("outcomes", [])
    scores = records.get("scores")
    if scores is None:
        for o in outcomes:
            if o["status"] != "LABELLED" or o.get("score") is None:
                continue
            out[str(o["model_version"])][str(o["event_id"])] = (
                micros(o["event_time"]),
                int(o["customer_id"]),
                float(o["score"]),
                int(bool(o["label"])),
            )
        return out
    labels = {str(o["event_id"]): bool(o["label"]) for o in outcomes if o["status"] == "LABELLED"}
    for s in scores:
        t = micros(s["event_time"])
        if t < mature_before_us:
            event_id = str(s["event_id"])
            label = int(labels.get(event_id, False))
            out[str(s["model_version"])][event_id] = (t, int(s["customer_id"]), float(s["score"]), label)
    return out


def drill_report(
    records: Mapping[str, list[dict[str, Any]]], data: DrillData, *, bad_version: str | None = None
) -> dict[str, Any]:
    live, end, drift = data.timeline.live_start_us, data.end_us, data.drift_start_us
    alarms = sorted(
        (
            {
                "at": iso(micros(a["window_end"])),
                "at_us": micros(a["window_end"]),
                "kind": a["kind"],
                "subject": a["subject"],
                "statistic": a["statistic"],
                "value": a["value"],
                "threshold": a["threshold"],
                "p_value": a.get("p_value"),
                "model_version": a["model_version"],
                "evidence": [e["subject"] for e in a.get("evidence", []) if e.get("moved")][:5],
            }
            for a in records.get("drift", [])
        ),
        key=lambda a: (a["at_us"], a["kind"], a["subject"]),
    )
    decisions = sorted(
        (
            {
                "at": iso(micros(e["stream_time"])) if e.get("stream_time") is not None else None,
                "at_us": micros(e["stream_time"]) if e.get("stream_time") is not None else None,
                "action": e["action"],
                "version": e["version"],
                "previous_version": e.get("previous_version"),
                "alias": e["alias"],
                "actor": e.get("actor"),
                "reason": e.get("reason"),
                "evidence": _evidence(e.get("evidence")),
            }
            for e in records.get("model-events", [])
            if e["action"] in DECISIONS
        ),
        key=lambda d: d["at_us"] if d["at_us"] is not None else -1,
    )
    before = [a for a in alarms if drift is None or a["at_us"] < drift]
    after = [a for a in alarms if drift is not None and a["at_us"] >= drift]
    loop_promotions = [d for d in decisions if d["action"] == "PROMOTED" and d["actor"] == LOOP_ACTOR]
    promoted_after = next((d for d in loop_promotions if drift is not None and (d["at_us"] or 0) >= drift), None)
    scored = _scored(records, end - MATURITY_DAYS * DAY_US)

    def period(lo: int, hi: int) -> dict[str, Any]:
        return {
            "from": iso(lo),
            "to": iso(hi),
            "versions": {
                v: _metrics([r for r in rows.values() if lo <= r[0] < hi])
                for v, rows in sorted(scored.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else 0)
                if any(lo <= r[0] < hi for r in rows.values())
            },
        }

    periods: dict[str, Any] = {"before_drift": period(live, drift if drift is not None else end)}
    if drift is not None:
        periods["after_drift"] = period(drift, promoted_after["at_us"] if promoted_after else end)
    if promoted_after is not None:
        periods["after_promotion"] = period(promoted_after["at_us"], end)
    report: dict[str, Any] = {
        "timeline": data.describe(),
        "alarms": alarms,
        "false_alarms_before_drift": len(before),
        "alarms_after_drift": len(after),
        "detection_delay_days": _days(after[0]["at_us"] - drift) if after and drift is not None else None,
        "decisions": decisions,
        "retrains": sum(1 for d in decisions if d["action"] == "RETRAINED"),
        "promotions": [d for d in decisions if d["action"] == "PROMOTED" and d["at_us"] is not None],
        "rollbacks": [d for d in decisions if d["action"] == "ROLLED_BACK"],
        "periods": periods,
    }
    if drift is not None:
        delay = _first_fraud_label_delay(data, drift)
        report["detection_deadline_days"] = None if delay is None else round(delay + 3.0, 2)
        report["promotion_delay_days"] = (
            _days(promoted_after["at_us"] - drift) if promoted_after and promoted_after["at_us"] else None
        )
    if promoted_after is not None:
        report["after_promotion_7d"] = _head_to_head(
            scored, str(promoted_after["version"]), str(promoted_after["previous_version"]), promoted_after["at_us"]
        )
    if bad_version is not None:
        rolled = next((d for d in report["rollbacks"] if str(d["previous_version"]) == bad_version), None)
        promoted = next((d for d in report["promotions"] if str(d["version"]) == bad_version), None)
        report["bad_promotion"] = {
            "version": bad_version,
            "promoted_at": promoted["at"] if promoted else None,
            "rolled_back_at": rolled["at"] if rolled else None,
            "rolled_back": rolled is not None,
            "reason": rolled["reason"] if rolled else None,
            "days_to_rollback": _days(rolled["at_us"] - promoted["at_us"])
            if rolled and promoted and rolled["at_us"] and promoted["at_us"]
            else None,
        }
    for a in report["alarms"]:
        a.pop("at_us")
    for d in report["decisions"]:
        d.pop("at_us")
    return report


def _head_to_head(
    scored: Mapping[str, Mapping[str, tuple[int, int, float, int]]], new: str, old: str, at_us: int
) -> dict[str, Any]:
    hi = at_us + 7 * DAY_US
    a, b = scored.get(new, {}), scored.get(old, {})
    common = sorted(e for e, r in a.items() if at_us <= r[0] < hi and e in b)
    return {
        "from": iso(at_us),
        "to": iso(hi),
        "events": len(common),
        new: _metrics([a[e] for e in common]),
        old: _metrics([b[e] for e in common]),
        "new_better": bool(
            common
            and (_metrics([a[e] for e in common])["average_precision"] or 0)
            > (_metrics([b[e] for e in common])["average_precision"] or 0)
        ),
        "new_version": new,
        "old_version": old,
    }


def _first_fraud_label_delay(data: DrillData, drift_us: int) -> float | None:
    labels = data.labels
    tx_t, label_t = us_of(labels["tx_event_time"]), us_of(labels["event_time"])
    mask = (tx_t >= drift_us) & labels["is_fraud"].to_numpy(dtype=bool)
    if not mask.any():
        return None
    return float((label_t[mask].min() - drift_us) / DAY_US)


def generated_at() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
