"""What the demo learns from `slipstream shadow` and `slipstream outcomes` as they run: per challenger, how often it
agrees with the champion (decision flips) and how far behind its comparisons come; per ranking challenger, how close
its orders of the champion's recommendations come (mean overlap@10, Kendall tau, NDCG@10 against the champion's
order, the share whose first item changed); per model version, how many of its scores have been judged by a label
so far (label coverage) and how well it did on them (realised average precision and precision / recall at its
threshold). Read from ``shadow-comparisons``, ``shadow-rankings`` and ``outcomes`` with ``read_committed``, so every
record counts once.

Comparison lag: for a fraud challenger, from the champion's prediction on ``predictions`` to the comparison on
``shadow-comparisons`` (both broker times); for a ranking challenger, from the moment the demo sent the request to
``recommendation-requests`` (its wall clock) to the comparison on ``shadow-rankings`` (broker time) — so it includes
the champion's ranking by `score-stream --reco`; the demo does not read the (large) recommendations back."""

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
class RankingStats:
    """One ranking challenger's comparisons so far: sums of the measures (their means), top-item changes, lags."""

    compared: int = 0
    overlap_sum: float = 0.0
    tau_sum: float = 0.0
    ndcg_sum: float = 0.0
    top_changed: int = 0
    k: int = 0  # the cut-off of the latest comparison (10 unless the list is shorter)
    lag_ms: deque[float] = field(default_factory=lambda: deque(maxlen=20_000))

    def on_ranking(self, value: Mapping[str, Any], lag_ms: float | None) -> None:
        self.compared += 1
        self.overlap_sum += float(value["overlap_at_k"])
        self.tau_sum += float(value["kendall_tau"])
        self.ndcg_sum += float(value["ndcg_at_k"])
        self.top_changed += bool(value["top_changed"])
        self.k = int(value["k"])
        if lag_ms is not None:
            self.lag_ms.append(lag_ms)

    def _mean(self, total: float) -> float:
        return total / self.compared if self.compared else float("nan")

    @property
    def overlap(self) -> float:
        return self._mean(self.overlap_sum)

    @property
    def tau(self) -> float:
        return self._mean(self.tau_sum)

    @property
    def ndcg(self) -> float:
        return self._mean(self.ndcg_sum)

    @property
    def top_changed_share(self) -> float:
        return self._mean(self.top_changed)

    def quality(self) -> str:
        """The mean measures against the champion (tau: Kendall's tau-b), for the model panel."""
        if not self.compared:
            return "no ranking compared yet"
        return (
            f"vs champion: overlap@{self.k} {self.overlap:.2f}  tau {self.tau:.2f}  NDCG@{self.k} {self.ndcg:.3f}  "
            f"new top item {_share(self.top_changed_share)}"
        )

    def summary(self) -> dict[str, Any]:
        return {
            "compared": self.compared,
            "mean_overlap_at_k": self.overlap,
            "mean_kendall_tau": self.tau,
            "mean_ndcg_at_k": self.ndcg,
            "top_changed_share": self.top_changed_share,
            "lag_from_request_p50_ms": _pct(self.lag_ms, 50),
            "lag_from_request_p99_ms": _pct(self.lag_ms, 99),
        }


@dataclass
class Verdicts:
    """Shadow comparisons and label outcomes as the demo reads them."""

    challengers: dict[str, ChallengerStats] = field(default_factory=dict)
    rankers: dict[str, RankingStats] = field(default_factory=dict)  # ranking challengers, by version
    versions: dict[str, VersionVerdict] = field(default_factory=dict)
    orphan_labels: int = 0
    # broker time of each champion prediction not yet compared (bounded: the oldest go first)
    _predicted_ms: dict[str, int] = field(default_factory=dict)
    # wall clock (ms) at which each recommendation request was sent; written by the sender thread only
    _requested_ms: dict[str, float] = field(default_factory=dict)

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

    def on_request(self, request_id: str, sent_ms: float) -> None:
        """A recommendation request went to ``recommendation-requests`` at ``sent_ms`` (wall clock). Called from one
        thread only (the sender): it alone inserts and evicts, the reader only looks up."""
        self._requested_ms[request_id] = sent_ms
        if len(self._requested_ms) > 50_000:
            del self._requested_ms[next(iter(self._requested_ms))]

    def on_ranking(self, value: Mapping[str, Any], timestamp_ms: int | None) -> None:
        stats = self.rankers.setdefault(str(value["challenger_version"]), RankingStats())
        sent = self._requested_ms.get(str(value["request_id"]))
        stats.on_ranking(value, None if sent is None or timestamp_ms is None else timestamp_ms - sent)

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
            "rankers": {version: r.summary() for version, r in self.rankers.items()},
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
