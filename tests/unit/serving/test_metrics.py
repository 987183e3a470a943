"""The scorer's Prometheus counters follow RecentEvents' running counts: increments, never double counts."""

from __future__ import annotations

from slipstream.serving.metrics import ScorerMetrics


def _value(metrics: ScorerMetrics, name: str, outcome: str) -> float:
    value = metrics.registry.get_sample_value(f"{name}_total", {"outcome": outcome})
    return 0.0 if value is None else value


def test_recent_counts_become_counter_increments() -> None:
    metrics = ScorerMetrics()
    # Compared with what was there before: once Feast is imported (other tests), prometheus_client runs in
    # multi-process mode and a process's counters add up across registries.
    series = [
        ("slipstream_stream_states", "reused"),
        ("slipstream_stream_states", "rebuilt"),
        ("slipstream_stream_remembered_events", "confirmed"),
        ("slipstream_stream_remembered_events", "expired"),
    ]
    before = [_value(metrics, name, outcome) for name, outcome in series]
    metrics.record_recent(reused=3, rebuilt=2, confirmed=1, expired=0)
    metrics.record_recent(reused=3, rebuilt=5, confirmed=1, expired=4)  # a batch later
    metrics.record_recent(reused=3, rebuilt=5, confirmed=1, expired=4)  # nothing new: nothing added
    added = [_value(metrics, name, outcome) - b for (name, outcome), b in zip(series, before, strict=True)]
    assert added == [3, 5, 1, 4]
