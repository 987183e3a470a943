"""The figures of one set of scored items (a model version's period): counts, coverage, maturity, realised AUC,
AP, precision and recall at the model's decisions, card precision@k, label-delay percentiles, flips; with the CBPE
estimate of the awaiting items and the calibration check of the labelled ones. Pure; used by
:class:`~slipstream.monitoring.performance.PerformanceBook`, which keeps the items.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import numpy as np

from slipstream.models.metrics import average_precision, card_precision_at_k, roc_auc
from slipstream.monitoring.estimate import calibration_check, expected_metrics
from slipstream.monitoring.exceptions import MonitoringError

PERIODS: Final = ("day", "week", "all")
AWAITING, LABELLED, UNLABELLED = 0, 1, 2
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)
DAY_US: Final = 86_400_000_000

GroupKey = tuple[str, str, str]  # model_name, model_version, role


@dataclass(slots=True)
class Item:
    group: GroupKey
    event_us: int
    customer_id: int
    score: float
    decision: bool
    state: int = AWAITING
    label: bool = False
    delay_ms: float = float("nan")
    flip: int = -1  # -1: no comparison (a champion), else 0 or 1
    abs_delta: float = 0.0
    has_score: bool = False  # the prediction or comparison was read (not only the outcome)
    has_outcome: bool = False


def micros(value: datetime | int) -> int:
    """Microseconds since the epoch of a tz-aware datetime (as the contracts decode) or of an int already so."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            msg = f"event time {value.isoformat()!r} has no time zone"
            raise MonitoringError(msg)
        return (value - _EPOCH) // _US
    return int(value)


def day_of(event_us: int) -> date:
    return date(1970, 1, 1) + timedelta(days=event_us // DAY_US)


def period_key(day: date, period: str) -> tuple[str, date | None]:
    """A day's key and start in ``period``: ``2018-08-01``, ``2018-W31`` (ISO week, its Monday) or ``all``."""
    if period == "day":
        return day.isoformat(), day
    if period == "week":
        year, week, weekday = day.isocalendar()
        return f"{year}-W{week:02d}", day - timedelta(days=weekday - 1)
    return "all", None


def _quantiles_hours(delays_ms: list[float]) -> dict[str, float] | None:
    if not delays_ms:
        return None
    q = np.percentile(np.asarray(delays_ms, dtype=np.float64) / 3_600_000.0, [50, 90, 99])
    return {"p50": float(q[0]), "p90": float(q[1]), "p99": float(q[2])}


def figures(items: list[Item], card_k: int = 100) -> dict[str, Any]:
    """The realised (and estimated) figures of a set of items, sorted by (event time, id) by the caller."""
    labelled = [i for i in items if i.state == LABELLED]
    awaiting = [i for i in items if i.state == AWAITING]
    y = np.fromiter((i.label for i in labelled), dtype=bool, count=len(labelled))
    s = np.fromiter((i.score for i in labelled), dtype=np.float64, count=len(labelled))
    d = np.fromiter((i.decision for i in labelled), dtype=bool, count=len(labelled))
    positives, n_flagged, tp = int(y.sum()), int(d.sum()), int((y & d).sum())
    both = 0 < positives < len(labelled)
    compared = [i for i in items if i.flip >= 0]
    row: dict[str, Any] = {
        "seen": len(items),
        "labelled": len(labelled),
        "unlabelled_at_horizon": sum(1 for i in items if i.state == UNLABELLED),
        "awaiting": len(awaiting),
        "label_coverage": len(labelled) / len(items) if items else None,
        "mature": not awaiting,
        "positives": positives,
        "auc_roc": roc_auc(y, s) if both else None,
        "average_precision": average_precision(y, s) if positives else None,
        "flagged": n_flagged,
        "precision": tp / n_flagged if n_flagged else None,
        "recall": tp / positives if positives else None,
        f"card_precision_at_{card_k}": None,
        "label_delay_hours": _quantiles_hours([i.delay_ms for i in labelled if i.delay_ms == i.delay_ms]),
        "comparisons": len(compared),
        "flip_rate": sum(i.flip for i in compared) / len(compared) if compared else None,
        "mean_abs_score_delta": sum(i.abs_delta for i in compared) / len(compared) if compared else None,
        "estimated": None,
        "calibration": None,
    }
    if labelled:
        days = np.fromiter((i.event_us // DAY_US for i in labelled), dtype=np.int64, count=len(labelled))
        cards = np.fromiter((i.customer_id for i in labelled), dtype=np.int64, count=len(labelled))
        row[f"card_precision_at_{card_k}"] = card_precision_at_k(days, cards, y, s, card_k).mean
    if awaiting:
        row["estimated"] = _safely(
            expected_metrics,
            [i.score for i in awaiting],
            [i.decision for i in awaiting],
        )
    if labelled:
        row["calibration"] = _safely(calibration_check, s, y)
    return row


def _safely(fn: Any, *args: Any) -> dict[str, Any]:
    try:
        result: dict[str, Any] = fn(*args)
    except MonitoringError as exc:  # scores that are not probabilities: no estimate, and the reason why
        return {"kind": "estimated", "unavailable": str(exc)}
    return result


__all__ = [
    "AWAITING",
    "DAY_US",
    "LABELLED",
    "PERIODS",
    "UNLABELLED",
    "Item",
    "day_of",
    "figures",
    "micros",
    "period_key",
]
