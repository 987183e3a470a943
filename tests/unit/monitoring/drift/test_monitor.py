"""The monitor: ids, windows, late records, determinism under any batch split, snapshots, detector alarms."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from slipstream.models.reference import drift_reference
from slipstream.monitoring.drift.monitor import DriftMonitor, DriftSettings
from slipstream.monitoring.exceptions import MonitoringError

DAY = 86_400 * 1_000_000
T0 = 1_700_006_400 * 1_000_000  # a UTC midnight (2023-11-15)
NAMES = ["amount", "weekend"]
SETTINGS = DriftSettings(fdr_q=0.01, min_window_n=100)


def _reference() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    n = 14 * 1000
    x = np.c_[rng.lognormal(3, 1, n), rng.integers(0, 2, n)].astype(float)
    times = T0 - 14 * DAY + np.repeat(np.arange(14) * DAY, 1000) + 5
    return drift_reference(x, rng.beta(1, 20, n), times, NAMES)


REFERENCE = _reference()


Event = tuple[int, dict[str, float], float]


def _events(days: int, per_day: int, shift_from_day: int = 99, seed: int = 1) -> list[Event]:
    rng = np.random.default_rng(seed)
    out = []
    for d in range(days):
        scale = 1.5 if d >= shift_from_day else 1.0
        for t in np.sort(rng.integers(0, DAY, per_day)):
            features = {"amount": float(rng.lognormal(3, 1) * scale), "weekend": float(rng.integers(0, 2))}
            out.append((T0 + d * DAY + int(t), features, float(rng.beta(1, 20))))
    return out


def _run(monitor: DriftMonitor, events: list[Any], batch: int) -> tuple[list[Any], list[Any]]:
    windows: list[Any] = []
    alarms: list[Any] = []
    for i in range(0, len(events), batch):
        for t, f, s in events[i : i + batch]:
            monitor.observe_prediction(t, f, s)
        w, a = monitor.advance(events[i : i + batch][-1][0] - DAY // 2)
        windows += w
        alarms += a
    w, a = monitor.advance(events[-1][0] + DAY)
    return windows + w, alarms + a


def _monitor() -> DriftMonitor:
    return DriftMonitor(REFERENCE, SETTINGS, model_name="fraud", model_version="3")


def test_windows_and_alarms_match_the_contracts_with_deterministic_ids() -> None:
    windows, alarms = _run(_monitor(), _events(4, 500, shift_from_day=2), 250)
    assert [w["window_start"] for w in windows] == [T0 + d * DAY for d in range(4)]
    first = windows[0]
    assert first["window_id"] == f"fraud@3:{T0 + DAY}" and first["n"] == 500 and not first["alarmed"]
    assert [s["subject"] for s in first["subjects"]] == [*NAMES, "score"]
    row = first["subjects"][0]
    assert set(row) == {"subject", "statistic", "value", "threshold", "p_value", "moved", "others"}
    assert row["statistic"] == "psi" and set(row["others"]) == {"ks", "wasserstein"}
    assert first["subjects"][1]["statistic"] == "jensen_shannon"
    assert [w["alarmed"] for w in windows] == [False, False, True, True]
    assert [(a["kind"], a["subject"]) for a in alarms] == [("FEATURE_DRIFT", "amount")] * 2
    alarm = alarms[0]
    assert alarm["alarm_id"] == f"fraud@3:FEATURE_DRIFT:amount:{T0 + 3 * DAY}"
    assert alarm["window_start"] == T0 + 2 * DAY and alarm["nominal_false_alarm_rate"] == 0.01
    assert alarm["value"] > alarm["threshold"] and alarm["p_value"] < 0.01
    assert alarm["evidence"][0]["subject"] == "amount" and alarm["evidence"][0]["moved"]
    assert len(alarm["evidence"]) <= SETTINGS.max_evidence


def test_same_inputs_any_batch_split_same_outputs() -> None:
    events = _events(4, 400, shift_from_day=3)
    results = [_run(_monitor(), events, batch) for batch in (1, 97, 400, len(events))]
    assert all(r == results[0] for r in results)


def test_small_windows_close_untested() -> None:
    windows, alarms = _run(_monitor(), _events(2, 50), 50)
    assert [w["subjects"] for w in windows] == [[], []] and alarms == []


def test_late_records_are_counted_and_dropped() -> None:
    monitor = _monitor()
    for t, f, s in _events(3, 10):
        monitor.observe_prediction(t, f, s)
    # three days seen and all open (partitions read unevenly lose nothing): a record of the first is on time
    monitor.observe_prediction(T0 + 5, {"amount": 1.0, "weekend": 0.0}, 0.1)
    assert monitor.late == 0
    windows, _ = monitor.advance(T0 + 3 * DAY)
    assert [w["window_start"] for w in windows] == [T0, T0 + DAY, T0 + 2 * DAY]
    monitor.observe_prediction(T0 + 2 * DAY + 5, {"amount": 1.0, "weekend": 0.0}, 0.1)
    assert monitor.late == 1 and sum(w["n"] for w in windows) == 31  # closed by the watermark: late
    # a record that needs a ninth open window closes the oldest: a record of that one is late too
    for day in range(3, 12):
        monitor.observe_prediction(T0 + day * DAY + 1, {"amount": 1.0, "weekend": 0.0}, 0.1)
    monitor.observe_prediction(T0 + 3 * DAY + 7, {"amount": 1.0, "weekend": 0.0}, 0.1)
    assert monitor.late == 2


def test_a_snapshot_round_trip_continues_identically() -> None:
    events = _events(3, 300, shift_from_day=2)
    monitor = _monitor()
    for t, f, s in events[:450]:
        monitor.observe_prediction(t, f, s)
    for i in range(300):
        monitor.observe_outcome(T0 + i, 0.1, i % 10 == 0)
    restored = DriftMonitor.from_bytes(monitor.to_bytes(), REFERENCE, SETTINGS)
    assert restored.to_bytes() == monitor.to_bytes()
    assert _run(restored, events[450:], 100) == _run(monitor, events[450:], 100)


def test_error_rate_and_flip_rate_alarms() -> None:
    monitor = _monitor()
    rng = np.random.default_rng(5)
    alarms = []
    for i in range(20_000):
        bad = i >= 10_000
        label = bool(rng.random() < 0.1)
        score = float(rng.random()) if bad else (0.8 if label else 0.05)
        alarms += monitor.observe_outcome(T0 + i, score, label)
    assert alarms and {a["kind"] for a in alarms} == {"ERROR_RATE"}
    first = alarms[0]
    assert first["alarm_id"] == f"fraud@3:ERROR_RATE:brier:{first['window_end']}"
    assert first["window_end"] >= T0 + 10_000 and first["window_start"] == T0 and first["p_value"] is None
    assert first["statistic"] == "adwin" and first["evidence"] == []
    flips = []
    for i in range(10_000):
        flips += monitor.observe_comparison(T0 + i, "4", bool(rng.random() < (0.02 if i < 5_000 else 0.2)))
    assert flips and flips[0]["kind"] == "FLIP_RATE" and flips[0]["subject"] == "4"


def test_settings_and_reference_are_checked() -> None:
    with pytest.raises(MonitoringError, match="fdr_q=2"):
        DriftSettings(fdr_q=2)
    with pytest.raises(MonitoringError, match="window_s=5000"):
        DriftMonitor(REFERENCE, DriftSettings(window_s=5000), model_name="m", model_version="1")


def test_a_first_window_that_started_mid_way_closes_untested() -> None:
    late_start = _monitor()
    on_time = _monitor()
    for t, f, s in _events(2, 600):
        if t - T0 >= DAY // 2 or t >= T0 + DAY:  # the stream starts at noon of the first day
            late_start.observe_prediction(t, f, s)
        on_time.observe_prediction(t, f, s)
    partial, _ = late_start.advance(T0 + 2 * DAY)
    full, _ = on_time.advance(T0 + 2 * DAY)
    assert partial[0]["n"] >= 250 and partial[0]["subjects"] == [] and not partial[0]["alarmed"]
    assert partial[1]["subjects"] and full[0]["subjects"]  # the next window, and a first one from its start, tested
    restored = DriftMonitor.from_bytes(late_start.to_bytes(), REFERENCE, SETTINGS)
    assert restored.to_bytes() == late_start.to_bytes()


def test_a_window_whose_predictions_stopped_early_closes_untested() -> None:
    """A champion replaced at noon: its last window holds half a day, whose time-of-day mix is not a day's."""
    monitor = _monitor()
    for t, f, s in _events(2, 600):
        if t < T0 + DAY + DAY // 2:
            monitor.observe_prediction(t, f, s)
    windows, _ = monitor.advance(T0 + 2 * DAY)
    assert windows[0]["subjects"] and not windows[1]["subjects"] and windows[1]["n"] >= 250
