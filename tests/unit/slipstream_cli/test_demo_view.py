"""The demo's output: the live view shows every number the demo promises, on a terminal and, as status lines, in a
file or a pipe; the farewell says what was stopped, what was deleted and what keeps running."""

from __future__ import annotations

import importlib
import io
import threading
import time
from datetime import UTC, datetime

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


def test_farewell_after_a_clean_run() -> None:
    captured = Console(record=True, width=200, color_system=None)
    report = DemoReport(Namespace.new("", datetime(2026, 11, 22, tzinfo=UTC)), stats=_stats(), live=True)
    report.timings = {"platform": 5.0, "data": 3.0, "train": 20.0, "warmup": 60.0, "scorers": 1.0, "startup": 89.0}
    report.exit_codes = {"score-stream": 0, "serve": -15, "engine": 0}
    report.cleaned = True
    assert cli_demo._farewell(captured, report, external=False, keep=False)
    text = captured.export_text()
    assert "start-up to live traffic: 89 s" in text
    assert "serve (ended on SIGTERM)" in text
    assert "no child process left running" in text
    assert f"deleted this run's topics ({report.namespace.prefix}*)" in text
    assert "slipstream infra down" in text


def test_farewell_fails_on_leftovers_or_nothing_scored() -> None:
    captured = Console(record=True, width=200, color_system=None)
    report = DemoReport(Namespace.new("", datetime(2026, 11, 22, tzinfo=UTC)), live=True, left_running=[4242])
    assert not cli_demo._farewell(captured, report, external=True, keep=True)
    text = captured.export_text()
    assert "4242" in text
    assert "nothing was scored" in text
    assert "left as they are" in text
    assert "SLIPSTREAM_TOPIC_PREFIX=" in text


# ---------------------------------------------------------------------------------------------- not a terminal
class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_not_a_terminal_gets_plain_lines_and_a_terminal_the_live_views() -> None:
    stop = threading.Event()
    assert isinstance(cli_demo.console_ui(Console(file=io.StringIO()), stop, 200.0), cli_demo.PlainUI)
    terminal = Console(file=io.StringIO(), force_terminal=True)
    assert isinstance(cli_demo.console_ui(terminal, stop, 200.0), cli_demo.ConsoleUI)


def test_plain_ui_prints_a_status_line_every_few_seconds_with_the_numbers() -> None:
    stream = io.StringIO()
    clock = _Clock()
    ui = cli_demo.PlainUI(Console(file=stream), threading.Event(), 200.0, every_s=5.0, clock=clock)
    ui.step("warming the online store")
    for applied in (0, 100, 200, 200, 200, 200):
        clock.now += 2.0  # a line at most every 5 s, and only when the count moved: one, at 6 s
        ui.warm(applied, 400)
    ui.warm(400, 400)
    ui.done("online store warm")
    stats = _stats()
    ui.live(stats)  # the first call: says what comes, and marks the start of the rates
    stats._marks[0] = (stats._marks[0][0] - 1.0, 0, 0)  # as if that mark were a second old: 10 produced/s
    for _ in range(12):  # 6 s of the demo's twice-a-second refresh: one status line
        clock.now += 0.5
        ui.live(stats)
    report = DemoReport(Namespace.new("", datetime(2026, 11, 22, tzinfo=UTC)), stats=stats, live=True)
    ui.close(report)

    text = stream.getvalue()
    assert "\x1b[" not in text  # no cursor movement or colour in a file
    lines = text.splitlines()
    assert lines[0] == "warming the online store …"
    assert [line for line in lines if "warm-up:" in line] == ["  warm-up: 200 of 400 events applied (50%)"]
    assert "✓ online store warm (12.0 s)" in lines
    assert "live: a status line every 5 s (Ctrl-C stops)" in lines
    status = [line for line in lines if line.startswith("live 0:")]
    assert len(status) == 2  # one while live, one at the end; each on one line, however long
    for expected in (
        "produced 10 (10/s)",
        "scored 10 (10/s)",
        "latency p50/p99 12.0/12.0 ms",
        "http p50/p99 2.5/3.0 ms",
        "frauds/flagged/caught 2/1/1",
        "precision 100.0% recall 50.0%",
        "model fraud v4",
        "dead letters engine-fraud-customer 3, score-stream 3",
    ):
        assert expected in status[0], (expected, status[0])
    assert "Slipstream live" in text  # the final table follows, as on a terminal
    assert "FLAGGED" in text
