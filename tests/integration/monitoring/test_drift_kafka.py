"""`slipstream drift` on the real broker: one window per day, a feature shift alarmed with its evidence and the
unchanged days quiet, an error jump alarmed, a version without a reference unmonitored — and, across a SIGKILL
mid-stream, every window and alarm written exactly once and equal to the pure monitor's on the same records."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from slipstream.models.reference import drift_reference
from slipstream.monitoring.drift.monitor import DriftMonitor, DriftSettings
from slipstream.monitoring.drift.processor import DriftCounts, DriftRunSettings, run_drift
from slipstream.processor_hosts import hosting
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.exceptions import SlipstreamError
from slipstream.schemas.transport import EventConsumer, EventProducer
from tests.conftest import Services
from tests.samples import sample

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, tzinfo=UTC)  # a UTC midnight: live day d is [T0 + d days, T0 + d + 1 days)
DAY_US = 86_400_000_000
T0_US = int(T0.timestamp()) * 1_000_000
NUMERIC = [f"num_{j:02d}" for j in range(12)]
BINARY = ["is_night", "is_weekend", "is_online"]
NAMES = [*NUMERIC, *BINARY]  # 15 features
SHIFTED = "num_03"
DAYS, SHIFT_DAY, PER_DAY = 6, 3, 500
SETTINGS = DriftSettings(min_window_n=300)
CUSTOMERS = 240  # the predictions' keys: spread over every partition of the topic


def _rows(rng: np.random.Generator, n: int, shift: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """n rows of the 15 features (``SHIFTED`` scaled by ``shift``) and their scores."""
    numeric = rng.lognormal(mean=np.linspace(1.0, 3.0, len(NUMERIC)), sigma=0.6, size=(n, len(NUMERIC)))
    numeric[:, NUMERIC.index(SHIFTED)] *= shift
    binary = (rng.random((n, len(BINARY))) < np.array([0.2, 2 / 7, 0.5])).astype(float)
    return np.c_[numeric, binary], rng.beta(1.0, 20.0, n)


def _reference() -> dict[str, Any]:
    """The drift sketch of a training sample of 20 days before T0, 600 rows a day."""
    rng = np.random.default_rng(7)
    x, scores = _rows(rng, 20 * 600)
    times = T0_US - 20 * DAY_US + np.repeat(np.arange(20) * DAY_US, 600) + rng.integers(0, DAY_US, 20 * 600)
    return drift_reference(x, scores, times, NAMES)


REFERENCE = _reference()


def _cards(name: str, version: str) -> Mapping[str, Any] | None:
    """Version 1 has a drift reference in its card, version 9 a card without one."""
    if (name, version) == ("fraud", "1"):
        return {"name": name, "version": version, "reference": {"drift": REFERENCE}}
    return {"name": name, "version": version, "reference": {}}


def _predictions(version: str, days: range, per_day: int, seed: int) -> list[dict[str, Any]]:
    """Champion predictions of ``version``, in event-time order; ``SHIFTED`` x 1.6 from ``SHIFT_DAY`` on."""
    rng = np.random.default_rng(seed)
    out: list[dict[str, Any]] = []
    for day in days:
        x, scores = _rows(rng, per_day, 1.6 if day >= SHIFT_DAY else 1.0)
        for k, us in enumerate(np.sort(rng.integers(0, DAY_US, per_day))):
            i = len(out)
            out.append(
                sample("prediction", i)
                | {
                    "prediction_id": f"{seed}-{i}@{version}",
                    "event_id": f"{seed}-{i}",
                    "customer_id": int(rng.integers(CUSTOMERS)),
                    "model_version": version,
                    "score": float(scores[k]),
                    "features": dict(zip(NAMES, x[k].tolist(), strict=True)),
                    "event_time": T0 + timedelta(days=day, microseconds=int(us)),
                }
            )
    return out


def _outcomes() -> list[dict[str, Any]]:
    """Labelled champion outcomes of version 1 whose Brier error jumps (0.0025 -> 0.9) after the first 1,500; one
    customer, so one partition and one order."""
    out = []
    for i in range(3000):
        t = T0 + timedelta(minutes=2 * i)
        out.append(
            sample("outcome", i)
            | {"outcome_id": f"o{i}@1", "event_id": f"o{i}", "customer_id": 7, "model_version": "1"}
            | {"score": 0.05, "label": i >= 1500 and i % 10 != 0, "event_time": t, "label_time": t + timedelta(1)}
        )
    return out


def _send(services: Services, contracts: Contracts, topic: str, records: list[dict[str, Any]]) -> None:
    with EventProducer(services.bootstrap_servers, contracts) as producer:
        for record in records:
            producer.send(topic, record)


def _committed(services: Services, contracts: Contracts, topic: str, quiet_polls: int = 3) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    config = {"isolation.level": "read_committed"}
    with EventConsumer(services.bootstrap_servers, contracts, [topic], config=config) as reader:
        quiet = 0
        while quiet < quiet_polls:
            batch = reader.poll_batch(5000, 0.5)
            got.extend(e.value for e in batch.events)
            quiet = 0 if batch.events else quiet + 1
    return got


def _drift_process(bootstrap: str, prefix: str, runtime: str) -> None:
    """`run_drift` in a process of its own, with the injected card source (the test SIGKILLs it)."""
    settings = DriftRunSettings(monitor=SETTINGS)
    run_drift(bootstrap, Contracts.default(prefix), settings, _cards, threading.Event(), host=hosting(runtime))


def _in_thread(services: Services, contracts: Contracts, runtime: str) -> DriftCounts:
    """`run_drift` on a thread of this process until idle for 6 s (after a SIGKILL its first read can wait for the
    predecessor's open transaction to be aborted); its counts."""
    found: list[DriftCounts] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            found.append(
                run_drift(
                    services.bootstrap_servers,
                    contracts,
                    DriftRunSettings(monitor=SETTINGS),
                    _cards,
                    threading.Event(),
                    until_idle_s=6.0,
                    host=hosting(runtime),
                )[1]
            )
        except SlipstreamError as exc:  # raised again below, in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=work, name="drift-under-test", daemon=True)
    thread.start()
    thread.join(120)
    assert not thread.is_alive(), "run_drift did not stop once idle"
    if errors:
        raise errors[0]
    return found[0]


def _us(value: Any) -> int:
    return int(value.timestamp()) * 1_000_000 + value.microsecond if isinstance(value, datetime) else int(value)


def _plain(record: Mapping[str, Any], wall_clock: str) -> dict[str, Any]:
    """A decoded record as the pure monitor writes it: timestamps in epoch µs, without its wall-clock field."""
    return {k: _us(v) if k in ("window_start", "window_end") else v for k, v in record.items() if k != wall_clock}


def _expected(
    predictions: list[dict[str, Any]], outcomes: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What the pure monitor writes for the same records, in event-time order."""
    monitor = DriftMonitor(REFERENCE, SETTINGS, model_name="fraud", model_version="1")
    alarms: list[dict[str, Any]] = []
    for o in outcomes:
        alarms += monitor.observe_outcome(_us(o["label_time"]), o["score"], o["label"])
    for p in sorted(predictions, key=lambda p: _us(p["event_time"])):
        monitor.observe_prediction(_us(p["event_time"]), p["features"], p["score"])
    windows, window_alarms = monitor.advance(max(_us(p["event_time"]) for p in predictions))
    return windows, alarms + window_alarms


def test_drift_windows_and_alarms_exactly_once_across_a_sigkill(
    services: Services, contracts: Contracts, runtime: str
) -> None:
    started = time.monotonic()
    first = _predictions("1", range(3), PER_DAY, seed=1)  # days 0-2, unchanged
    later = _predictions("1", range(3, DAYS), PER_DAY, seed=2)  # days 3-5, SHIFTED moved
    clock = _predictions("1", range(DAYS, DAYS + 1), 1, seed=3)  # day 6: closes day 5
    unmonitored = _predictions("9", range(DAYS - 1, DAYS), 200, seed=4)
    outcomes = _outcomes()

    # A drift process of its own reads days 0-2 (and closes days 0 and 1); days 3-5 arrive, it is SIGKILLed.
    _send(services, contracts, "predictions", first)
    child = mp.get_context("spawn").Process(
        target=_drift_process, args=(services.bootstrap_servers, contracts.catalog.prefix, runtime), daemon=True
    )
    child.start()
    try:
        deadline = time.monotonic() + 60
        while len(_committed(services, contracts, "drift-windows", 1)) < 2:
            assert child.is_alive(), f"the drift process exited with {child.exitcode}"
            assert time.monotonic() < deadline, "no drift window committed in 60 s"
            time.sleep(0.2)
        _send(services, contracts, "predictions", later[: len(later) // 2])
        time.sleep(0.3)  # it is reading them
    finally:
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
    before = _committed(services, contracts, "drift-windows")
    assert 2 <= len(before) < DAYS, [w["window_id"] for w in before]

    # The rest, an unmonitored version and the outcomes; a new drift process carries on from the committed state.
    _send(services, contracts, "predictions", later[len(later) // 2 :] + unmonitored + clock)
    _send(services, contracts, "outcomes", outcomes)
    counts = _in_thread(services, contracts, runtime)
    assert counts.unmonitored == len(unmonitored)

    windows = _committed(services, contracts, "drift-windows")
    alarms = _committed(services, contracts, "drift")
    ids = Counter(w["window_id"] for w in windows)
    assert [k for k, n in ids.items() if n > 1] == []
    assert sorted(ids) == sorted(f"fraud@1:{T0_US + (d + 1) * DAY_US}" for d in range(DAYS))  # one per day, no v9
    assert [(w["window_id"], w["n"]) for w in windows if w["n"] != PER_DAY] == []  # none late, none lost
    assert [k for k, n in Counter(a["alarm_id"] for a in alarms).items() if n > 1] == []

    # Feature drift: none on the unchanged days; on every shifted day, naming SHIFTED, with its evidence.
    by_day = {(_us(a["window_end"]) - T0_US) // DAY_US - 1: a for a in alarms if a["kind"] == "FEATURE_DRIFT"}
    assert sorted(by_day) == list(range(SHIFT_DAY, DAYS))
    assert not [w for w in windows if w["alarmed"] and _us(w["window_end"]) <= T0_US + SHIFT_DAY * DAY_US]
    for day, alarm in by_day.items():
        assert alarm["subject"] == SHIFTED and alarm["statistic"] == "psi", alarm
        assert alarm["alarm_id"] == f"fraud@1:FEATURE_DRIFT:{SHIFTED}:{T0_US + (day + 1) * DAY_US}"
        assert alarm["value"] > alarm["threshold"] > 0 and alarm["p_value"] < SETTINGS.fdr_q
        assert alarm["n"] == PER_DAY and alarm["nominal_false_alarm_rate"] == SETTINGS.fdr_q
        top = alarm["evidence"][0]
        assert (top["subject"], top["moved"], top["value"]) == (SHIFTED, True, alarm["value"])
        assert len(alarm["evidence"]) == SETTINGS.max_evidence
    moved = {s["subject"] for w in windows for s in w["subjects"] if s["moved"]}
    assert moved == {SHIFTED}

    # The error jump: ERROR_RATE on the Brier error, after the jump.
    errors = [a for a in alarms if a["kind"] == "ERROR_RATE"]
    assert errors and all(a["subject"] == "brier" and a["statistic"] == "adwin" for a in errors)
    assert min(_us(a["window_end"]) for a in errors) > _us(outcomes[1500]["label_time"])

    # Exactly what the pure monitor writes on the same records, across the SIGKILL.
    want_windows, want_alarms = _expected(first + later + clock, outcomes)
    assert sorted((_plain(w, "closed_at") for w in windows), key=lambda w: w["window_id"]) == want_windows
    got_alarms = sorted((_plain(a, "raised_at") for a in alarms), key=lambda a: a["alarm_id"])
    assert got_alarms == sorted(want_alarms, key=lambda a: a["alarm_id"])
    assert time.monotonic() - started < 60
