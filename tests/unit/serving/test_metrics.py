"""The scorer's Prometheus counters follow RecentEvents' running counts: increments, never double counts."""

from __future__ import annotations

from serving.metrics import ScorerMetrics


def _value(metrics: ScorerMetrics, name: str, outcome: str) -> float:
    value = metrics.registry.get_sample_value(f"{name}_total", {"outcome": outcome})
    return 0.0 if value is None else value


def test_recent_counts_become_counter_increments() -> None:
    metrics = ScorerMetrics()
    metrics.record_recent(reused=3, rebuilt=2, confirmed=1, expired=0)
    metrics.record_recent(reused=3, rebuilt=5, confirmed=1, expired=4)  # a batch later
    metrics.record_recent(reused=3, rebuilt=5, confirmed=1, expired=4)  # nothing new: nothing added
    assert _value(metrics, "slipstream_stream_states", "reused") == 3
    assert _value(metrics, "slipstream_stream_states", "rebuilt") == 5
    assert _value(metrics, "slipstream_stream_remembered_events", "confirmed") == 1
    assert _value(metrics, "slipstream_stream_remembered_events", "expired") == 4
