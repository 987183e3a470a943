"""One scorer process's parts, wired: the scorers, their model slots, the watcher that swaps models, the metrics.

Both front ends use it: the HTTP app (:mod:`slipstream.serving.http`) and the Kafka path
(:mod:`slipstream.serving.stream`).
"""

from __future__ import annotations

import gc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from slipstream.serving.base import FraudScore, Recommendation, StateStore
from slipstream.serving.fraud import FraudScorer
from slipstream.serving.metrics import ScorerMetrics
from slipstream.serving.model_slot import ModelSlot
from slipstream.serving.model_watcher import ModelWatcher


def freeze_startup_heap() -> None:
    """Take the start-up heap out of the cyclic collector's passes, once the scorer is built.

    Start-up leaves ~360k GC-tracked objects (MLflow, SQLAlchemy, ONNX, FastAPI), none of them garbage; a full
    collection over them stalls scoring for 100-300 ms. Both front ends call this, and the benchmark as they do.
    """
    gc.collect()
    gc.freeze()


class RecoScorerLike(Protocol):
    def rank(self, request: Mapping[str, Any]) -> Recommendation: ...


@dataclass
class ScoringService:
    store: StateStore
    fraud: FraudScorer
    fraud_slot: ModelSlot
    metrics: ScorerMetrics
    reco: RecoScorerLike | None = None
    reco_slot: ModelSlot | None = None
    watcher: ModelWatcher | None = None
    started: bool = field(default=False, init=False)

    @property
    def slots(self) -> dict[str, ModelSlot]:
        out = {"fraud": self.fraud_slot}
        if self.reco_slot is not None:
            out["reco"] = self.reco_slot
        return out

    def start(self) -> None:
        if self.watcher is not None and not self.started:
            self.watcher.start()
        self.started = True

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        self.store.close()
        self.started = False

    def readiness(self) -> dict[str, Any]:
        """What /readyz reports: every model loaded and the online store reachable."""
        models = {
            endpoint: {"loaded": slot.loaded, **({"version": slot.current.version} if slot.loaded else {})}
            for endpoint, slot in self.slots.items()
        }
        redis_ok = self.store.ping()
        ready = redis_ok and self.fraud_slot.loaded
        return {"ready": ready, "redis": redis_ok, "models": models}

    def observe_fraud(self, path: str, scores: Sequence[FraudScore]) -> None:
        """Count and time a batch of fraud scores."""
        if not scores:
            return
        metrics = self.metrics
        metrics.observe_timings(path, "fraud", scores[0].timings_us)
        flagged = sum(s.decision for s in scores)
        if flagged:
            metrics.child(metrics.decisions, "flagged").inc(flagged)
        if len(scores) > flagged:
            metrics.child(metrics.decisions, "passed").inc(len(scores) - flagged)
        for score in scores:
            for fresh in score.freshness:
                if fresh.age_ms is not None:
                    metrics.child(metrics.feature_age, "fraud", fresh.view).observe(max(fresh.age_ms, 0.0) / 1000.0)
        metrics.child(metrics.requests, path, "fraud", "ok").inc(len(scores))
