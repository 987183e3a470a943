"""The demo's closed-loop panel without a broker: records shaped as the drift monitor, the loop and the label joiner
write them (decoded) go through ``LiveStats.on_event`` into the panel, the status line and the report; the demo's
policy loads and differs from the default where its comments say; ``--drift`` resolves as documented."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from slipstream.cli.demo_view import live_view, status_line
from slipstream.demo import LiveStats
from slipstream.demo.closedloop import DRIFT_START, POLICY, drift_data, live_seconds_needed
from slipstream.exceptions import InputError
from slipstream.monitoring.loop.policy import load_policy

cli_demo = importlib.import_module("slipstream.cli.demo")
D = datetime(2026, 11, 25, tzinfo=UTC)  # the shown drift start
DAY = timedelta(days=1)


def _render(renderable: object) -> str:
    console = Console(record=True, width=200, color_system=None)
    console.print(renderable)
    return console.export_text()


def _us(when: datetime) -> int:
    return int(when.timestamp() * 1_000_000)


def _alarm(kind: str, subject: str, window_end: datetime) -> dict[str, Any]:
    return {
        "alarm_id": f"{kind}:{subject}:{window_end.isoformat()}",
        "model_name": "fraud",
        "model_version": "1",
        "kind": kind,
        "subject": subject,
        "statistic": "psi",
        "value": 0.31,
        "threshold": 0.12,
        "window_end": window_end,
    }


def _event(action: str, version: str, stream: datetime | None, previous: str | None = None) -> dict[str, Any]:
    return {
        "event_id": f"{action}:{version}",
        "action": action,
        "model_name": "fraud",
        "version": version,
        "previous_version": previous,
        "reason": f"reason of {action}",
        "stream_time": stream,
    }


def _outcome(version: str, role: str, event_id: str, when: datetime, score: float, label: bool) -> dict[str, Any]:
    return {
        "status": "LABELLED",
        "event_id": event_id,
        "event_time": when,
        "model_version": version,
        "role": role,
        "score": score,
        "decision": score > 0.5,
        "label": label,
    }


def _story() -> LiveStats:
    stats = LiveStats()
    loop = stats.loop
    loop.enabled, loop.scenario, loop.drift_start_us = True, "new-fraud-pattern", _us(D)
    loop.ui_url = "http://127.0.0.1:8765"
    feed = stats.on_event
    feed("model-events", _event("PROMOTED", "1", None), None, 0.0)  # the demo's champion: by hand, no stream time
    for i in range(20):  # before the drift v1 ranks the frauds first; after it, last
        before, after = D - DAY + i * timedelta(minutes=10), D + i * timedelta(minutes=10)
        feed("outcomes", _outcome("1", "CHAMPION", f"b{i}", before, 0.9 if i % 5 == 0 else 0.1, i % 5 == 0), None, 0)
        feed("outcomes", _outcome("1", "CHAMPION", f"a{i}", after, 0.1 if i % 5 == 0 else 0.5, i % 5 == 0), None, 0)
    feed("drift", _alarm("FEATURE_DRIFT", "TX_AMOUNT", D + DAY), None, 0.0)
    feed("drift", _alarm("SCORE_DRIFT", "score", D + 2 * DAY), None, 0.0)
    feed("model-events", _event("RETRAIN_STARTED", "1", D + 9 * DAY), None, 0.0)
    feed("model-events", _event("RETRAIN_FAILED", "1", D + 9 * DAY), None, 0.0)
    feed("model-events", _event("RETRAIN_STARTED", "1", D + 11 * DAY), None, 0.0)
    feed("model-events", _event("RETRAINED", "2", D + 11 * DAY, previous="1"), None, 0.0)
    for i in range(10):  # in shadow: both score the same events; v2 finds the frauds
        when, fraud = D + 12 * DAY + i * timedelta(minutes=10), i % 2 == 0
        feed("outcomes", _outcome("1", "CHAMPION", f"s{i}", when, 0.3 if fraud else 0.6, fraud), None, 0)
        feed("outcomes", _outcome("2", "CHALLENGER", f"s{i}", when, 0.9 if fraud else 0.1, fraud), None, 0)
    feed("model-events", _event("PROMOTION_HELD", "2", D + 12 * DAY, previous="1"), None, 0.0)
    feed("model-events", _event("PROMOTED", "2", D + 20 * DAY, previous="1"), None, 0.0)
    return stats


def test_the_panel_tells_the_story_in_event_time() -> None:
    stats = _story()
    loop = stats.loop
    assert loop.champion == "2" and loop.challenger == "1"  # the predecessor stays in shadow for the rollback watch
    assert [d.action for d in loop.decisions] == [
        "RETRAIN_STARTED",
        "RETRAIN_FAILED",
        "RETRAIN_STARTED",
        "RETRAINED",
        "PROMOTION_HELD",
        "PROMOTED",
    ]  # the demo's own PROMOTED (no stream time) is not the loop's
    assert loop.first_alarm is not None and loop.first_alarm.subject == "TX_AMOUNT"
    assert loop.latest_alarm is not None and loop.latest_alarm.kind == "SCORE_DRIFT"
    assert loop.state == "promoted v2; watching for a rollback"
    realised = {(v, p): (ap, n) for v, p, ap, n in loop.realised()}
    assert realised[("1", "before")] == (1.0, 20)
    assert realised[("1", "after")][0] < 0.5  # the new pattern: v1 misses it
    assert realised[("2", "after")] == (1.0, 10)
    assert loop.paired_ap()[:2] == (1.0, 0.5)  # frauds tied last: precision 5/10 and loop.paired_ap()[2:] == (10, 5)

    shown = _render(live_view(stats, rate=200.0))
    assert any("dashboard (slipstream ui)" in line and "http://127.0.0.1:8765" in line for line in shown.splitlines())
    assert "closed loop: slipstream drift → slipstream loop   (promoted v2; watching for a rollback)" in shown
    assert "first alarm" in shown and "FEATURE_DRIFT TX_AMOUNT 0.31 > 0.12 (v1)" in shown
    assert "RETRAIN_FAILED" in shown and "2026-12-04 00:00" in shown  # D + 9 days, event time
    assert "v2: reason of PROMOTED" in shown
    assert "challenger 1.000 vs champion 0.500 on 10 events (5 frauds)" in shown

    line = status_line(stats)
    assert "loop: promoted v2; watching for a rollback; 2 alarms (latest SCORE_DRIFT score at 2026-11-27 00:00)" in line
    assert "last PROMOTED v2 at 2026-12-15 00:00" in line and "v1 before 1.000" in line

    summary = loop.summary()
    assert summary["drift_start"] == "2026-11-25T00:00:00+00:00"
    assert summary["alarms"] == {"FEATURE_DRIFT": 1, "SCORE_DRIFT": 1}
    assert summary["decisions"][-1] == {
        "action": "PROMOTED",
        "version": "2",
        "event_time": "2026-12-15T00:00:00+00:00",
        "reason": "reason of PROMOTED",
    }
    assert summary["same_events"]["pair"] == ["2", "1"] and summary["same_events"]["events"] == 10


def test_no_loop_no_panel_and_a_quiet_loop_says_so() -> None:
    stats = LiveStats()
    assert "closed loop" not in _render(live_view(stats, rate=200.0)) and "loop:" not in status_line(stats)
    stats.loop.enabled = True
    shown = _render(live_view(stats, rate=200.0))
    assert "drift alarms" in shown and "none yet" in shown and "no labels yet" in shown
    assert status_line(stats).endswith("loop: watching; 0 alarms; no decision yet; realised AP -")
    stats.on_event("model-events", _event("CHALLENGER_REJECTED", "3", D), None, 0.0)
    assert stats.loop.state == "challenger rejected" and stats.loop.challenger == ""


def test_the_demo_policy_is_a_tuned_copy_of_the_default() -> None:
    demo, default = load_policy(POLICY), load_policy(None)
    assert demo.model.name == default.model.name == "fraud"
    assert demo.retrain.label_maturity_days == default.retrain.label_maturity_days == 7  # the labels' delay
    assert demo.triggers.drift.kinds == () and demo.triggers.performance.enabled
    assert demo.retrain.window_days + demo.retrain.valid_days + demo.retrain.label_maturity_days <= 16
    assert demo.promotion.offline.margin == 0.05 and demo.triggers.cooldown_days == 2


def test_drift_option(tmp_path: Path) -> None:
    resolve = cli_demo._drift
    assert resolve(None, None, None, 200.0) == "new-fraud-pattern"  # until Ctrl-C: the data lasts ~40 event days
    assert resolve(None, None, 60.0, 200.0) == "none"  # a minute cannot show the loop
    assert resolve(None, None, live_seconds_needed(7.0, 200.0), 200.0) == "new-fraud-pattern"
    assert resolve(None, tmp_path / "mine.parquet", None, 200.0) == "none"
    assert resolve("none", None, None, 200.0) == "none"
    with pytest.raises(InputError, match="--drift: 'card-testing' is not one of new-fraud-pattern, none"):
        resolve("card-testing", None, None, 200.0)
    with pytest.raises(InputError, match="--data .* is a file of yours"):
        resolve("new-fraud-pattern", tmp_path / "mine.parquet", None, 200.0)
    assert cli_demo._default_data(tmp_path, "none") == tmp_path / "data" / "fraud.parquet"
    drifted = cli_demo._default_data(tmp_path, "new-fraud-pattern")
    assert drifted == drift_data(tmp_path, "new-fraud-pattern")
    assert drifted.name == f"fraud-new-fraud-pattern-{DRIFT_START.isoformat()}.parquet"
    # ~21 event days + up to 7 before the drift at 200/s: about 22 minutes
    assert 20 * 60 < live_seconds_needed(7.0, 200.0) < 25 * 60
