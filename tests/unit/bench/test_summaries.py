"""How the benchmarks turn raw samples into their figures: percentiles, e2e loss and duplicates, the HTTP headline
figures and the swap summary — pure functions, no services."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any, cast

import pytest

from slipstream.bench.e2e_bench import Arrival, E2EBenchConfig, e2e_summary, interleave, phase_row
from slipstream.bench.loadgen import LoadResult
from slipstream.bench.scorer_bench import http_summary, swap_summary
from slipstream.bench.stats import percentiles


def test_percentiles_of_a_known_sample() -> None:
    stats = percentiles([float(i) for i in range(1, 1001)])
    assert stats["n"] == 1000
    assert stats["p50_ms"] == pytest.approx(500.5)
    assert stats["p99_ms"] == pytest.approx(990.01)
    assert stats["p999_ms"] == pytest.approx(999.001)
    assert stats["max_ms"] == 1000.0


def test_percentiles_of_nothing_are_nan_not_zero() -> None:
    stats = percentiles([])
    assert stats["n"] == 0
    assert math.isnan(stats["p99_ms"])


def test_e2e_latency_is_from_due_time_to_first_prediction() -> None:
    due = {"a": 10.0, "b": 10.5, "c": 11.0, "warm": 9.0}
    received = [("b", 10.502), ("a", 10.004), ("a", 10.010), ("warm", 9.001), ("x", 1.0)]
    row = e2e_summary(due, received, ["a", "b", "c"])
    assert row["sent"] == 3
    assert row["received"] == 2
    assert row["lost"] == 1  # c never came back
    assert row["duplicates"] == 1  # a came twice; its first arrival counts
    assert row["max_ms"] == pytest.approx(4.0)
    assert row["p50_ms"] == pytest.approx(3.0)


def test_labels_are_sent_before_the_first_later_transaction() -> None:
    assert interleave([10, 20, 30], [5, 10, 11, 25, 40]) == [[0, 1], [2], [3]]
    assert interleave([1, 2], []) == [[], []]


def test_e2e_simulates_enough_days_for_every_rate() -> None:
    config = E2EBenchConfig(rates=(1_000.0, 5_000.0), seconds=25.0, warmup_seconds=5.0)
    assert config.heldout_days * 9_000 >= 1_000 * 30 + 5_000 * 30


def _row(rate: float, p99: float, achieved: float, errors: int = 0, p50: float = 0.3) -> dict[str, float]:
    return {"rate": rate, "p50_ms": p50, "p99_ms": p99, "achieved_rps": achieved, "errors": errors, "answered": 10}


def test_http_max_rps_needs_throughput_no_errors_and_the_p99_target() -> None:
    rows = [
        _row(500, 0.8, 500),
        _row(1000, 1.2, 999, p50=0.4),
        _row(2000, 1.9, 1990, p50=0.5),
        _row(3000, 1.5, 2800),  # fell behind: 93 % of the rate
        _row(4000, 1.8, 4000, errors=1),
        _row(5000, 9.0, 5000),
    ]
    got = http_summary(rows, 2.0)
    assert got["http_max_rps"] == 2000
    assert got["http_max_achieved_rps"] == 5000
    assert got["http_p99_ms"] == 1.9  # the worst at <= 2,000 req/s
    assert got["http_p50_ms"] == 0.5
    assert got["http_samples"] == 60


def test_http_max_rps_is_zero_when_no_rate_qualifies() -> None:
    assert http_summary([_row(500, 3.0, 500)], 2.0)["http_max_rps"] == 0.0


def test_swap_summary_counts_versions_around_the_promotion() -> None:
    result = LoadResult(rate=10.0, seconds=1.0, start=0.0)
    result.due = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    result.latency_ms = [1.0, 1.0, 1.0, 50.0, 1.0, 1.0, 1.0]
    result.status = [200] * 7
    result.tags = ["1", "1", "1", "1", "2", "2", "2"]
    got = swap_summary(result, "1", "2", promoted_at=0.25, published_at=0.3)
    assert got["versions_before"] == {"1": 3}
    assert got["versions_after"] == {"2": 2}  # due after the first v2 answer (0.401)
    assert got["old_version_after_first_new"] == 0
    assert got["swap_s"] == pytest.approx(0.101)
    assert got["errors"] == 0
    assert got["max_ms_during_swap"] == 50.0


def test_swap_summary_sees_an_old_answer_after_the_new() -> None:
    result = LoadResult(rate=10.0, seconds=1.0, start=0.0)
    result.due, result.latency_ms, result.status, result.tags = [0.0, 0.1, 0.2], [1.0] * 3, [200] * 3, ["2", "1", "2"]
    got = swap_summary(result, "1", "2", promoted_at=0.0, published_at=0.0)
    assert got["old_version_after_first_new"] == 1


def test_e2e_phase_is_measured_to_the_topic_with_the_read_beside_it() -> None:
    # due at 10.000 s (monotonic) = 1000.000 s (wall); sent 1 ms late; scored at 1000.004; on the topic in the
    # broker's millisecond 1000.006 (taken as 1000.0065); read at 10.008 (monotonic).
    sent = SimpleNamespace(
        due={"a": 10.0}, due_wall={"a": 1000.0}, lag_ms={"a": 1.0}, sent_wall_us={"a": 1_000_001_000}
    )
    stamps = {"received": 1_000_002_000, "scored": 1_000_004_000, "on_topic": 1_000_006_500, "read": 1_000_008_000}
    arrivals = [Arrival("a", 10.008, stamps), Arrival("other", 10.0, stamps)]
    row = phase_row(1000.0, cast("Any", sent), arrivals, ["a"])
    assert row["rate"] == 1000.0
    assert row["p50_ms"] == pytest.approx(6.5)
    assert row["read_p50_ms"] == pytest.approx(8.0)
    assert (row["lost"], row["duplicates"]) == (0, 0)
    assert row["hops_ms"]["to_scorer"]["p50"] == pytest.approx(1.0)
    assert row["hops_ms"]["scoring"]["p50"] == pytest.approx(2.0)
    assert row["hops_ms"]["to_topic"]["p50"] == pytest.approx(2.5)
    assert row["hops_ms"]["to_reader"]["p50"] == pytest.approx(1.5)
