"""What the live table shows, measured where the demo can see it: transactions as they are produced, and the
``predictions``, ``feature-log`` and ``dead-letter`` topics as they are read back (the closed loop's alarms and
decisions: :class:`~slipstream.demo.closedloop.LoopView`). Ground truth comes from the
simulation (every transaction sent knows whether it is a fraud), so precision and recall are exact so far; the
recommendations' from the clickstream's week after the cut-off, so their NDCG@10 is exact too.

The live table's model panel has a line per model and path (:class:`ModelRow`, :meth:`LiveStats.model_rows`): a
challenger or a shadow model is one more line, and what it measures one more field."""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from slipstream.demo.closedloop import LoopView
from slipstream.demo.verdicts import Verdicts
from slipstream.streams.engine.runner import StageStats


def _pct(samples: deque[float], q: float) -> float:
    return float(np.percentile(np.fromiter(samples, float), q)) if samples else float("nan")


@dataclass
class RecoStats:
    """Recommendations asked of the HTTP scorer: answers, round trips, the serving version and NDCG@10 of each."""

    registered: str = ""  # the version the demo registered and promoted
    challenger: str = ""  # the version the demo set as challenger beside it
    offline_ndcg: float = float("nan")  # the protocol's NDCG@10 on the same users, from the model card
    loaded: str | None = None  # the version /readyz said was loaded when live traffic started
    served: int = 0
    errors: int = 0
    streamed: int = 0  # the same requests sent to recommendation-requests (score-stream --reco, then the shadow)
    stream_errors: int = 0
    model: str = ""  # from the latest answer
    ms: deque[float] = field(default_factory=lambda: deque(maxlen=5_000))
    ndcg_sum: float = 0.0
    judged: int = 0  # answers with an NDCG (the user had a relevant item)
    last: dict[str, Any] = field(default_factory=dict)

    def on_answer(self, round_trip_ms: float, answer: Mapping[str, Any], ndcg: float) -> None:
        self.served += 1
        self.ms.append(round_trip_ms)
        if not np.isnan(ndcg):
            self.ndcg_sum += ndcg
            self.judged += 1
        model = answer.get("model") or {}
        self.model = f"{model.get('name', '?')} v{model.get('version', '?')}"
        self.last = {**answer, "round_trip_ms": round_trip_ms, "ndcg": ndcg}

    def percentile(self, q: float) -> float:
        """Round trip percentile ``q`` in ms."""
        return _pct(self.ms, q)

    @property
    def mean_ndcg(self) -> float:
        return self.ndcg_sum / self.judged if self.judged else float("nan")

    def summary(self) -> dict[str, Any]:
        return {
            "registered_version": self.registered or None,
            "challenger_version": self.challenger or None,
            "loaded_version": self.loaded,
            "model": self.model,
            "requests": self.served,
            "errors": self.errors,
            "streamed": self.streamed,
            "stream_errors": self.stream_errors,
            "p50_ms": self.percentile(50),
            "p99_ms": self.percentile(99),
            "ndcg_at_10": self.mean_ndcg,
            "offline_ndcg_at_10": self.offline_ndcg,
        }


@dataclass(frozen=True, slots=True)
class ModelRow:
    """One line of the live table's model panel: a model on one path, its role, what it served, how fast and how
    well (the quality measure says what it is)."""

    model: str
    role: str
    version: str
    path: str
    served: int
    p50_ms: float
    p99_ms: float
    quality: str


def _version(model: str) -> str:
    """``fraud v4`` -> ``4``; empty -> ``-``."""
    return model.rpartition(" v")[2] if " v" in model else "-"


def _share(value: float) -> str:
    return "-" if np.isnan(value) else f"{value:.1%}"


@dataclass
class LiveStats:
    """What the live table shows; fed by the producer thread, the reader (main thread) and the HTTP prober."""

    planned: int = 0
    http_port: int = 0
    speedup: float = 0.0
    produced: int = 0
    labels: int = 0
    poisoned: int = 0
    frauds_produced: int = 0
    scored: int = 0
    flagged: int = 0
    caught: int = 0
    frauds_scored: int = 0
    model: str = ""
    exhausted: bool = False
    shown_time_us: int = 0
    e2e_ms: deque[float] = field(default_factory=lambda: deque(maxlen=20_000))
    scorer_ms: deque[float] = field(default_factory=lambda: deque(maxlen=20_000))
    freshness_ms: deque[float] = field(default_factory=lambda: deque(maxlen=20_000))
    http_ms: deque[float] = field(default_factory=lambda: deque(maxlen=5_000))
    http_errors: int = 0
    http_last: dict[str, Any] = field(default_factory=dict)
    dead_letters: Counter[str] = field(default_factory=Counter)
    reco: RecoStats = field(default_factory=RecoStats)
    verdicts: Verdicts = field(default_factory=Verdicts)
    loop: LoopView = field(default_factory=LoopView)
    stages: dict[str, StageStats] = field(default_factory=dict)
    sent: dict[str, tuple[float, bool]] = field(default_factory=dict)  # transaction id -> (sent at, is fraud)
    vectors_pending: dict[str, float] = field(default_factory=dict)
    last_tx: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    stopped: float | None = None
    _marks: deque[tuple[float, int, int]] = field(default_factory=lambda: deque(maxlen=64))

    @property
    def elapsed(self) -> float:
        """Seconds of live traffic so far (to the stop, once stopped)."""
        return (self.stopped or time.perf_counter()) - self.started

    @property
    def precision(self) -> float:
        return self.caught / self.flagged if self.flagged else float("nan")

    @property
    def recall(self) -> float:
        return self.caught / self.frauds_scored if self.frauds_scored else float("nan")

    def percentile(self, name: str, q: float) -> float:
        samples: deque[float] = getattr(self, name)
        return _pct(samples, q)

    def model_rows(self) -> list[ModelRow]:
        """The model panel: fraud on the Kafka path and over HTTP, recommendations over HTTP, then a row per
        challenger (fraud: compared, lag prediction → comparison; reco: rankings compared, lag request →
        comparison)."""
        verdicts = self.verdicts
        champion = _version(self.model)
        fraud_quality = (
            f"precision {_share(self.precision)}  recall {_share(self.recall)} (simulator's truth); "
            f"{verdicts.quality(champion, self.scored)}"
        )
        http_model = str((self.http_last.get("model") or {}).get("version", "-"))
        reco = self.reco
        reco_quality = (
            f"NDCG@10 {reco.mean_ndcg:.3f} over {reco.judged:,} answers (offline {reco.offline_ndcg:.3f})"
            if reco.judged
            else "-"
        )
        pct = self.percentile
        return [
            ModelRow(
                "fraud",
                "champion",
                champion,
                "score-stream",
                self.scored,
                pct("e2e_ms", 50),
                pct("e2e_ms", 99),
                fraud_quality,
            ),
            ModelRow(
                "fraud",
                "champion",
                http_model,
                "HTTP",
                len(self.http_ms),
                pct("http_ms", 50),
                pct("http_ms", 99),
                "",
            ),
            ModelRow(
                "reco",
                "champion",
                _version(reco.model) if reco.model else reco.loaded or "-",
                "HTTP",
                reco.served,
                reco.percentile(50),
                reco.percentile(99),
                reco_quality,
            ),
            *(
                ModelRow(
                    "fraud",
                    "challenger",
                    version,
                    "shadow",
                    c.compared,
                    _pct(c.lag_ms, 50),
                    _pct(c.lag_ms, 99),
                    f"agrees {_share(c.agreement)} ({c.flips:,} flips); {verdicts.quality(version, c.compared)}",
                )
                for version, c in sorted(verdicts.challengers.items())
            ),
            *(
                ModelRow(
                    "reco",
                    "challenger",
                    version,
                    "shadow",
                    r.compared,
                    _pct(r.lag_ms, 50),
                    _pct(r.lag_ms, 99),
                    r.quality(),
                )
                for version, r in sorted(verdicts.rankers.items())
            ),
        ]

    def on_sent(self, record: Mapping[str, Any], fraud: bool, now: float) -> None:
        key = str(record["transaction_id"])
        self.sent[key] = (now, fraud)
        self.vectors_pending[key] = now
        self.frauds_produced += fraud
        self.produced += 1
        self.shown_time_us = int(record["event_time"])
        self.last_tx = {**record, "is_fraud": fraud}

    def on_prediction(self, value: Mapping[str, Any], now: float) -> None:
        sent = self.sent.pop(str(value["event_id"]), None)
        if sent is None:  # a re-delivered prediction: counted once
            return
        self.scored += 1
        self.e2e_ms.append((now - sent[0]) * 1000)
        self.scorer_ms.append(float(value["timings_us"].get("total_us", float("nan"))) / 1000)
        decision, fraud = bool(value["decision"]), sent[1]
        self.flagged += decision
        self.frauds_scored += fraud
        self.caught += decision and fraud
        self.model = f"{value['model_name']} v{value['model_version']}"

    def on_event(self, topic: str, value: Mapping[str, Any], timestamp_ms: int | None, now: float) -> None:
        """One record read back from ``topic`` (logical name), broker time ``timestamp_ms``, read at ``now``."""
        if topic == "predictions":
            self.on_prediction(value, now)
            self.verdicts.on_prediction(value, timestamp_ms)
        elif topic == "feature-log":
            self.on_vector(value, now)
        elif topic == "shadow-comparisons":
            self.verdicts.on_comparison(value, timestamp_ms)
        elif topic == "shadow-rankings":
            self.verdicts.on_ranking(value, timestamp_ms)
        elif topic == "outcomes":
            self.verdicts.on_outcome(value)
            self.loop.on_outcome(value)
        elif topic == "drift":
            self.loop.on_alarm(value)
        elif topic == "model-events":
            self.loop.on_model_event(value)
        else:
            self.dead_letters[str(value["processor"])] += 1

    def on_vector(self, value: Mapping[str, Any], now: float) -> None:
        sent = self.vectors_pending.pop(str(value["event_id"]), None)
        if sent is not None:
            self.freshness_ms.append((now - sent) * 1000)

    def rates(self) -> tuple[float, float]:
        """Transactions produced and scored per second over the last ~3 s; once stopped, over the whole run."""
        if self.stopped is not None:
            elapsed = max(self.elapsed, 1e-9)
            return self.produced / elapsed, self.scored / elapsed
        now = time.perf_counter()
        self._marks.append((now, self.produced, self.scored))
        while len(self._marks) > 2 and now - self._marks[1][0] > 3.0:
            self._marks.popleft()
        t0, produced0, scored0 = self._marks[0]
        span = now - t0
        if span < 0.2:
            return 0.0, 0.0
        return (self.produced - produced0) / span, (self.scored - scored0) / span
