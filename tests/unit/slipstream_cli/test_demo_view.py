"""The demo's terminal output: the live view shows every number the demo promises, and the farewell says what was
stopped, what was deleted and what keeps running."""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from rich.console import Console

from slipstream.demo import DemoReport, LiveStats
from slipstream.demo.timeline import Namespace
from slipstream.streams.engine.runner import StageStats

cli_demo = importlib.import_module("slipstream.cli.demo")  # `slipstream.cli.demo` the attribute is the command


def _render(renderable: object, width: int = 160) -> str:
    console = Console(record=True, width=width, color_system=None)
    console.print(renderable)
    return console.export_text()


def _stats() -> LiveStats:
    stats = LiveStats(planned=1000, speedup=1800.0, http_port=8123)
    now = time.perf_counter()
    for i in range(10):
        stats.on_sent({"transaction_id": i, "event_time": 1_795_000_000_000_000 + i, "amount": 5.0}, i < 2, now)
        value = {"event_id": str(i), "decision": i == 0, "model_name": "fraud", "model_version": "4", "timings_us": {}}
        stats.on_prediction(value, now + 0.012)
    stats.http_ms.extend([2.0, 3.0])
    stats.http_last = {
        "transaction_id": 9,
        "customer_id": 42,
        "amount": 57.16,
        "score": 0.9312,
        "decision": True,
        "is_fraud": True,
        "model": {"name": "fraud", "version": "4"},
        "round_trip_ms": 2.5,
        "timings_us": {"total_us": 180.0},
    }
    stats.poisoned = 3
    stats.dead_letters.update({"engine-fraud-customer": 3, "score-stream": 3})
    stats.stages["customer"] = StageStats(applied=1234)
    return stats


def test_live_view_shows_every_promised_number() -> None:
    text = _render(cli_demo.live_view(_stats(), rate=200.0))
    for expected in (
        "10 of 1,000",  # produced
        "target 200/s",
        "12.0 / 12.0 ms",  # produce -> prediction p50 / p99
        "2 / 1 / 1",  # frauds / flagged / caught
        "precision 100.0%",
        "recall 50.0%",
        "fraud v4",
        "engine-fraud-customer 3, score-stream 3",
        "customer 1,234",
        "×1,800",
        "port 8123",
        "FLAGGED",
        "customer 42",
        "truth: fraud",
    ):
        assert expected in text, expected


def test_live_view_before_anything_happened() -> None:
    text = _render(cli_demo.live_view(LiveStats(), rate=200.0, stopping=True))
    assert "stopping" in text
    assert "scored shortly" in text


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[Console]:
    console = Console(record=True, width=200, color_system=None)
    monkeypatch.setattr(cli_demo, "console", console)
    yield console


def test_farewell_after_a_clean_run(captured: Console) -> None:
    report = DemoReport(Namespace.new("", datetime(2026, 11, 22, tzinfo=UTC)), stats=_stats(), live=True)
    report.timings = {"platform": 5.0, "data": 3.0, "train": 20.0, "warmup": 60.0, "scorers": 1.0, "startup": 89.0}
    report.exit_codes = {"score-stream": 0, "serve": -15, "engine": 0}
    report.cleaned = True
    assert cli_demo._farewell(report, external=False, keep=False)
    text = captured.export_text()
    assert "start-up to live traffic: 89 s" in text
    assert "serve (ended on SIGTERM)" in text
    assert "no child process left running" in text
    assert f"deleted this run's topics ({report.namespace.prefix}*)" in text
    assert "slipstream infra down" in text


def test_farewell_fails_on_leftovers_or_nothing_scored(captured: Console) -> None:
    report = DemoReport(Namespace.new("", datetime(2026, 11, 22, tzinfo=UTC)), live=True, left_running=[4242])
    assert not cli_demo._farewell(report, external=True, keep=True)
    text = captured.export_text()
    assert "4242" in text
    assert "nothing was scored" in text
    assert "left as they are" in text
    assert "SLIPSTREAM_TOPIC_PREFIX=" in text
