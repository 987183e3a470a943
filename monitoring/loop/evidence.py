"""The numbers behind the loop's decisions: two versions' metric on the same labelled events, percentiles, JSON.

A *paired row* is one event scored by two versions and labelled: ``(event_us, event_id, customer_id, label,
score_a, score_b)``. Rows are always sorted by (event time, event id) first, so the metrics (card precision breaks
ties by first appearance) and the gates' prefixes are the same whatever order the records came in.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from slipstream.models.metrics import average_precision, card_precision_at_k
from slipstream.monitoring.figures import DAY_US

__all__ = ["Paired", "PairedRow", "metric", "p99", "paired", "prefix", "to_json"]

PairedRow = tuple[int, str, int, bool, float, float]  # event_us, event_id, customer_id, label, score_a, score_b
CARD_K: Final = 100


def metric(
    name: str, event_us: Sequence[int], customers: Sequence[int], labels: Sequence[bool], scores: Sequence[float]
) -> float | None:
    """``average_precision`` or ``card_precision_at_100`` (per day of event time, averaged); ``None`` without a
    positive label (neither is defined then). Rows must come sorted by event time and id."""
    if not any(labels):
        return None
    if name == "average_precision":
        return average_precision(labels, scores)
    days = [us // DAY_US for us in event_us]
    return card_precision_at_k(days, customers, labels, scores, k=CARD_K).mean


@dataclass(frozen=True)
class Paired:
    """Version ``a`` and ``b``'s ``metric`` on the same ``n`` events (``positives`` frauds among them)."""

    metric: str
    n: int
    positives: int
    a: float | None
    b: float | None
    first_us: int | None
    last_us: int | None

    def as_dict(self, a: str, b: str) -> dict[str, Any]:
        """Evidence: the versions' values under their version names, the counts and the period of the rows."""
        return {
            "metric": self.metric,
            "values": {a: _finite(self.a), b: _finite(self.b)},
            "labels": self.n,
            "positives": self.positives,
            "first_event_us": self.first_us,
            "last_event_us": self.last_us,
        }


def paired(name: str, rows: Sequence[PairedRow]) -> Paired:
    """Both versions' ``name`` metric on ``rows`` (sorted here by event time and id)."""
    ordered = sorted(rows, key=lambda r: (r[0], r[1]))
    times = [r[0] for r in ordered]
    customers = [r[2] for r in ordered]
    labels = [r[3] for r in ordered]
    a = metric(name, times, customers, labels, [r[4] for r in ordered])
    b = metric(name, times, customers, labels, [r[5] for r in ordered])
    first, last = (times[0], times[-1]) if times else (None, None)
    return Paired(name, len(ordered), sum(labels), a, b, first, last)


def prefix(rows: Iterable[PairedRow], min_labels: int, min_positives: int) -> tuple[list[PairedRow] | None, int, int]:
    """The shortest event-time prefix of ``rows`` holding ``min_labels`` rows and ``min_positives`` frauds.

    Returns (the prefix or ``None`` when the rows are not enough, rows counted, positives counted). A gate that
    evaluates this prefix of *mature* rows reaches the same verdict whenever it runs, live or on a replay: later
    labels extend the rows past the prefix and do not change it."""
    ordered = sorted(rows, key=lambda r: (r[0], r[1]))
    positives = 0
    for i, row in enumerate(ordered):
        positives += row[3]
        if i + 1 >= min_labels and positives >= min_positives:
            return ordered[: i + 1], i + 1, positives
    return None, len(ordered), positives


def p99(values: Iterable[float]) -> float | None:
    """The 99th percentile by nearest rank (a value that occurred); ``None`` for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 6)


def to_json(evidence: Mapping[str, Any]) -> str:
    """Compact JSON with sorted keys (the same evidence gives the same text); NaN and infinities refused."""
    return json.dumps(evidence, sort_keys=True, separators=(",", ":"), allow_nan=False)
