"""Prometheus metrics of a scorer process, on a registry of its own (no global state; tests build many)."""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector

from slipstream.serving.base import ServingModel
from slipstream.serving.model_slot import SwapRecord

# 25 µs .. 2.5 s: the scorer's p50 is ~100 µs and its targets are sub-millisecond.
LATENCY_BUCKETS = (
    25e-6, 50e-6, 75e-6, 100e-6, 150e-6, 200e-6, 300e-6, 500e-6, 750e-6,
    1e-3, 2e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1.0, 2.5,
)  # fmt: skip
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
AGE_BUCKETS = (1e-3, 5e-3, 10e-3, 50e-3, 0.1, 0.5, 1.0, 10.0, 60.0, 600.0, 3600.0, 86400.0, 7 * 86400.0)


def exposition(registry: CollectorRegistry) -> bytes:
    """``/metrics`` of a scorer: its registry, or, in a ``serve --workers N`` worker (PROMETHEUS_MULTIPROC_DIR set
    by the parent before the workers started), every worker's values summed from the shared directory, so a scrape
    sees the whole server whichever worker answers it."""
    directory = os.environ.get(MULTIPROC_ENV)
    # The mode prometheus_client chose when it was imported, not the variable now: Feast's import sets the variable
    # later in any process that imports it (slipstream/__init__.py imports prometheus_client first for that reason).
    if not directory or values.ValueClass is values.MutexValue:
        return generate_latest(registry)
    merged = CollectorRegistry()
    MultiProcessCollector(merged, path=directory)  # type: ignore[no-untyped-call]
    return generate_latest(merged)


class ScorerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.latency = Histogram(
            "slipstream_score_seconds",
            "Time to score, by front end (http, stream), endpoint and stage (redis, features, model, total).",
            ("path", "endpoint", "stage"),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "slipstream_requests",
            "Scoring requests by front end, endpoint and outcome.",
            ("path", "endpoint", "outcome"),
            registry=r,
        )
        self.decisions = Counter(
            "slipstream_decisions", "Fraud decisions by outcome (flagged or passed).", ("decision",), registry=r
        )
        self.feature_age = Histogram(
            "slipstream_feature_age_seconds",
            "Event time of a scored event minus the newest event behind its features, per view.",
            ("endpoint", "view"),
            buckets=AGE_BUCKETS,
            registry=r,
        )
        self.model_info = Gauge(
            "slipstream_model_info",
            "1 for the model version an endpoint serves, 0 for versions it served before.",
            ("endpoint", "model", "version"),
            registry=r,
            multiprocess_mode="max",  # serve --workers N: 1 if any worker serves it (docs/alerts.md)
        )
        self.model_loaded_at = Gauge(
            "slipstream_model_loaded_timestamp_seconds",
            "When the serving model was installed.",
            ("endpoint",),
            registry=r,
            multiprocess_mode="max",
        )
        self.swaps = Counter(
            "slipstream_model_swaps",
            "Model swaps by endpoint and result (installed, refused).",
            ("endpoint", "result"),
            registry=r,
        )
        self.kept_states = Counter(
            "slipstream_stream_states",
            "score-stream's entity states by how each was had: reused (Redis held the same bytes) or rebuilt "
            "(decoded, and the events the store did not show yet applied).",
            ("outcome",),
            registry=r,
        )
        self.remembered = Counter(
            "slipstream_stream_remembered_events",
            "Scored events score-stream stopped remembering: confirmed (the store showed them) or expired (older "
            "than the horizon: the engine lagged more than that).",
            ("outcome",),
            registry=r,
        )
        self._recent_seen = {"reused": 0, "rebuilt": 0, "confirmed": 0, "expired": 0}

        self._serving: dict[str, tuple[str, str]] = {}
        self._children: dict[tuple[str, tuple[str, ...]], Any] = {}
        for outcome in self._recent_seen:  # every series exists from the start, at 0
            self.child(self.kept_states if outcome in ("reused", "rebuilt") else self.remembered, outcome)

    def record_swap(self, endpoint: str, record: SwapRecord, current: ServingModel | None) -> None:
        """Count a swap attempt; on success, move the ``model_info`` gauge to the new version."""
        self.swaps.labels(endpoint, "installed" if record.accepted else "refused").inc()
        if record.accepted and current is not None:
            previous = self._serving.get(endpoint)
            if previous is not None:  # 0, not removed: removal is unsupported in prometheus multi-process mode
                self.model_info.labels(endpoint, *previous).set(0)
            self._serving[endpoint] = (current.name, current.version)
            self.model_info.labels(endpoint, current.name, current.version).set(1)
            self.model_loaded_at.labels(endpoint).set(current.loaded_at_us / 1e6)

    def record_recent(self, **totals: int) -> None:
        """Bring the kept-state and remembered-event counters up to ``totals`` (reused, rebuilt, confirmed,
        expired: :class:`~serving.recent.RecentEvents`' running counts)."""
        for outcome, total in totals.items():
            delta = total - self._recent_seen[outcome]
            if delta > 0:
                metric = self.kept_states if outcome in ("reused", "rebuilt") else self.remembered
                self.child(metric, outcome).inc(delta)
                self._recent_seen[outcome] = total

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once per process: the hot path observes without the lookup."""
        key = (metric._name, labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def observe_timings(self, path: str, endpoint: str, timings_us: dict[str, float]) -> None:
        for stage, micros in timings_us.items():
            self.child(self.latency, path, endpoint, stage.removesuffix("_us")).observe(micros / 1e6)
