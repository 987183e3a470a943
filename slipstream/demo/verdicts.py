"""What the demo learns from `slipstream shadow` and `slipstream outcomes` as they run: per challenger, how often it
agrees with the champion (decision flips) and how far behind its comparisons come; per model version, how many of
its scores have been judged by a label so far (label coverage) and how well it did on them (realised average
precision and precision / recall at its threshold). Read from ``shadow-comparisons`` and ``outcomes`` with
``read_committed``, so every record counts once."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

REFRESH_S = 2.0


@dataclass
class VersionVerdict:
    """One model version's labelled outcomes so far."""

    role: str
    scores: list[float] = field(default_factory=list)
    labels: list[bool] = field(default_factory=list)
    decisions: list[bool] = field(default_factory=list)
    unlabelled: int = 0
    _ap: float = float("nan")
    _at: float = 0.0

    @property
    def labelled(self) -> int:
        return len(self.labels)

    def realised_ap(self) -> float:
        """Average precision over the labelled scores (recomputed at most every :data:`REFRESH_S`)."""
        from slipstream.models.metrics import average_precision

        now = time.monotonic()
        if now - self._at >= REFRESH_S:
            self._at = now
            self._ap = average_precision(self.labels, self.scores) if any(self.labels) else float("nan")
        return self._ap

    def precision_recall(self) -> tuple[float, float]:
        labels, decisions = np.asarray(self.labels, bool), np.asarray(self.decisions, bool)
        flagged, frauds = int(decisions.sum()), int(labels.sum())
        caught = int((labels & decisions).sum())
        return (caught / flagged if flagged else float("nan"), caught / frauds if frauds else float("nan"))


@dataclass
class ChallengerStats:
    compared: int = 0
    flips: int = 0
    lag_ms: deque[float] = field(default_factory=lambda: deque(maxlen=20_000))

    @property
    def agreement(self) -> float:
        return 1.0 - self.flips / self.compared if self.compared else float("nan")


@dataclass
class Verdicts:
    """Shadow comparisons and label outcomes as the demo reads them."""

    challengers: dict[str, ChallengerStats] = field(default_factory=dict)
    versions: dict[str, VersionVerdict] = field(default_factory=dict)
    orphan_labels: int = 0
    # broker time of each champion prediction not yet compared (bounded: the oldest go first)
    _predicted_ms: dict[str, int] = field(default_factory=dict)

    def on_prediction(self, value: Mapping[str, Any], timestamp_ms: int | None) -> None:
        if timestamp_ms is not None:
            self._predicted_ms[str(value["prediction_id"])] = timestamp_ms
            if len(self._predicted_ms) > 200_000:
                del self._predicted_ms[next(iter(self._predicted_ms))]

    def on_comparison(self, value: Mapping[str, Any], timestamp_ms: int | None) -> None:
        stats = self.challengers.setdefault(str(value["challenger_version"]), ChallengerStats())
        stats.compared += 1
        stats.flips += bool(value["flip"])
        predicted = self._predicted_ms.get(str(value["prediction_id"]))
        if predicted is not None and timestamp_ms is not None:
            stats.lag_ms.append(float(timestamp_ms - predicted))

    def on_outcome(self, value: Mapping[str, Any]) -> None:
        status = value["status"]
        if status == "LABEL_WITHOUT_PREDICTION":
            self.orphan_labels += 1
            return
        verdict = self.versions.setdefault(str(value["model_version"]), VersionVerdict(str(value["role"]).lower()))
        if status == "LABELLED" and value["label"] is not None:
            verdict.scores.append(float(value["score"]))
            verdict.labels.append(bool(value["label"]))
            verdict.decisions.append(bool(value["decision"]))
        else:
            verdict.unlabelled += 1

    def quality(self, version: str, scored: int) -> str:
        """Label coverage and realised figures of ``version``, which scored ``scored`` events so far."""
        verdict = self.versions.get(version)
        if verdict is None or not scored:
            return "labels: none yet"
        coverage = verdict.labelled / scored
        ap = verdict.realised_ap()
        precision, recall = verdict.precision_recall()
        parts = [f"labelled {coverage:.0%} ({verdict.labelled:,})"]
        if not np.isnan(ap):
            parts.append(f"realised AP {ap:.3f}, P {_share(precision)} R {_share(recall)}")
        return "; ".join(parts)

    def summary(self) -> dict[str, Any]:
        return {
            "challengers": {
                version: {
                    "compared": c.compared,
                    "flips": c.flips,
                    "agreement": c.agreement,
                    "lag_p50_ms": _pct(c.lag_ms, 50),
                    "lag_p99_ms": _pct(c.lag_ms, 99),
                }
                for version, c in self.challengers.items()
            },
            "versions": {
                version: {
                    "role": v.role,
                    "labelled": v.labelled,
                    "unlabelled_at_horizon": v.unlabelled,
                    "realised_ap": v.realised_ap(),
                }
                for version, v in self.versions.items()
            },
            "labels_without_prediction": self.orphan_labels,
        }


def _pct(samples: deque[float], q: float) -> float:
    return float(np.percentile(np.fromiter(samples, float), q)) if samples else float("nan")


def _share(value: float) -> str:
    return "-" if np.isnan(value) else f"{value:.1%}"
