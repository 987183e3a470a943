"""Prometheus metrics of the model watchers, computed from the latest :meth:`PerformanceBook.summary`.

A custom collector on a dedicated :class:`~prometheus_client.CollectorRegistry` (never the global one): the reader
hands it each new summary with :meth:`MonitorMetrics.observe`, a scrape reads the last one whole (a scrape never
sees half of one refresh and half of the next). Figures are those of the ``all`` period row of each model version
and role (``role`` CHAMPION or CHALLENGER); a figure that is undefined (AP with no positive label yet) is absent,
not zero.

``slipstream_monitor_join_lag_seconds`` is measured in event time, not wall time, so a replay gives the same value:
the newest event time among predictions and comparisons minus the newest ``label_time`` among LABELLED outcomes
(0 when the outcomes are as recent as the scores). Labels and transactions share one timeline, so a label joiner that
keeps up stays near 0 and one that falls behind (or stops) grows it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, Final

from prometheus_client import start_http_server
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

VERSION_LABELS: Final = ["model", "version", "role"]
RANK_LABELS: Final = ["model", "champion_version", "challenger_version"]

#: (metric name, help, row field or "estimated.<field>") per model version and role, as gauges.
GAUGES: Final = (
    ("slipstream_monitor_label_coverage", "Share of the version's predictions labelled so far.", "label_coverage"),
    ("slipstream_monitor_awaiting_labels", "Predictions without an outcome yet.", "awaiting"),
    (
        "slipstream_monitor_realised_average_precision",
        "Average precision on the labelled predictions.",
        "average_precision",
    ),
    ("slipstream_monitor_realised_auc_roc", "AUC ROC on the labelled predictions.", "auc_roc"),
    ("slipstream_monitor_realised_precision", "Precision of the decisions, labelled predictions.", "precision"),
    ("slipstream_monitor_realised_recall", "Recall of the decisions, labelled predictions.", "recall"),
    (
        "slipstream_monitor_estimated_average_precision",
        "Estimated (CBPE, label-free) AP of the predictions awaiting labels.",
        "estimated.average_precision",
    ),
    (
        "slipstream_monitor_estimated_auc_roc",
        "Estimated (CBPE) AUC ROC of the predictions awaiting labels.",
        "estimated.auc_roc",
    ),
    (
        "slipstream_monitor_estimate_trusted",
        "1 when the scores were calibrated on the labelled predictions (|z| <= 3, >= 100 labels), else 0.",
        "calibration.trusted",
    ),
    ("slipstream_monitor_label_delay_p50_hours", "Median label delay, hours.", "label_delay_hours.p50"),
)
COUNTERS: Final = (
    ("slipstream_monitor_predictions", "Predictions (or challenger scores) seen, by id.", "seen"),
    ("slipstream_monitor_labelled", "Predictions joined to their label.", "labelled"),
    (
        "slipstream_monitor_unlabelled_at_horizon",
        "Predictions still unlabelled at the horizon.",
        "unlabelled_at_horizon",
    ),
)
SHADOW: Final = (
    (
        "slipstream_shadow_flip_rate",
        "Share of comparisons whose decisions differ (challenger vs champion).",
        "flip_rate",
    ),
    ("slipstream_shadow_mean_abs_score_delta", "Mean |challenger score - champion score|.", "mean_abs_score_delta"),
)
RANKS: Final = (
    (
        "slipstream_shadow_rank_overlap_at_k",
        "Mean overlap@k of the challenger ranker's list with the champion's.",
        "mean_overlap_at_k",
    ),
    ("slipstream_shadow_rank_kendall_tau", "Mean Kendall tau-b between the two rankers' orders.", "mean_kendall_tau"),
    (
        "slipstream_shadow_rank_ndcg_at_k",
        "Mean NDCG@k of the challenger's order, the champion's as ideal.",
        "mean_ndcg_at_k",
    ),
)


def _field(row: dict[str, Any], path: str) -> float | None:
    value: Any = row
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return None if value is None else float(value)


class MonitorMetrics(Collector):
    """The watchers' Prometheus metrics on a registry of their own (see module)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=False)
        self._lock = threading.Lock()
        self._summary: dict[str, Any] | None = None
        self.registry.register(self)

    def observe(self, summary: dict[str, Any]) -> None:
        """Publish a new summary (:meth:`PerformanceBook.summary` with the ``all`` period)."""
        with self._lock:
            self._summary = summary

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        """Serve ``/metrics`` on ``addr:port`` from a daemon thread."""
        start_http_server(port, addr=addr, registry=self.registry)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            summary = self._summary
        if summary is None:
            return
        rows = [r for r in summary["performance"] if r["period"] == "all"]
        for name, doc, path in GAUGES:
            gauge = GaugeMetricFamily(name, doc, labels=VERSION_LABELS)
            for row in rows:
                value = _field(row, path)
                if value is not None:
                    gauge.add_metric([row["model_name"], row["model_version"], row["role"]], value)
            yield gauge
        for name, doc, path in COUNTERS:
            counter = CounterMetricFamily(name, doc, labels=VERSION_LABELS)
            for row in rows:
                counter.add_metric([row["model_name"], row["model_version"], row["role"]], float(row[path]))
            yield counter
        yield from self._shadow(rows)
        yield from self._ranks([r for r in summary["rankings"] if r["period"] == "all"])
        yield from self._totals(summary)

    @staticmethod
    def _shadow(rows: list[dict[str, Any]]) -> Iterator[Metric]:
        challengers = [r for r in rows if r["role"] == "CHALLENGER" and r["flip_rate"] is not None]
        agreement = GaugeMetricFamily(
            "slipstream_shadow_agreement",
            "1 - flip rate: share of comparisons with the same decision.",
            labels=["model", "version"],
        )
        for name, doc, field in SHADOW:
            gauge = GaugeMetricFamily(name, doc, labels=["model", "version"])
            for row in challengers:
                gauge.add_metric([row["model_name"], row["model_version"]], float(row[field]))
            yield gauge
        for row in challengers:
            agreement.add_metric([row["model_name"], row["model_version"]], 1.0 - float(row["flip_rate"]))
        yield agreement

    @staticmethod
    def _ranks(rows: list[dict[str, Any]]) -> Iterator[Metric]:
        for name, doc, field in RANKS:
            gauge = GaugeMetricFamily(name, doc, labels=RANK_LABELS)
            for row in rows:
                gauge.add_metric([row["model_name"], row["champion_version"], row["challenger_version"]], row[field])
            yield gauge

    @staticmethod
    def _totals(summary: dict[str, Any]) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "slipstream_monitor_labels_without_prediction",
            "Labels no prediction claimed within the horizon.",
            value=summary["labels_without_prediction"],
        )
        duplicates = CounterMetricFamily(
            "slipstream_monitor_duplicates", "Re-delivered records (an id seen before), counted once.", labels=["kind"]
        )
        for kind, n in summary["duplicates"].items():
            duplicates.add_metric([kind], n)
        yield duplicates
        yield CounterMetricFamily(
            "slipstream_monitor_rejected", "Records that could not be used.", value=summary["rejected"]
        )
        if summary["join_lag_s"] is not None:
            yield GaugeMetricFamily(
                "slipstream_monitor_join_lag_seconds",
                "Event-time lag of the outcomes: newest score event time - newest label time (see docs).",
                value=summary["join_lag_s"],
            )


__all__ = ["MonitorMetrics"]
