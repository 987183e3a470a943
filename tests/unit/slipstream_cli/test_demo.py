"""The demo's pure parts: its clock, which events warm up and which go live, their send order, the live numbers,
its namespace and its bookkeeping of runs and child processes. No broker: the e2e test runs the real thing."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest

from slipstream.app import Slipstream
from slipstream.demo import DemoOptions, DemoRun, LiveStats
from slipstream.demo.exceptions import DemoError
from slipstream.demo.namespace import RunFiles
from slipstream.demo.processes import RUN_VARIABLE, child_env, children_of, processes_of_run, terminate
from slipstream.demo.timeline import (
    DAY_US,
    REACH_US,
    WEEK_US,
    Namespace,
    Timeline,
    day_micros,
    merge_order,
    micros,
    plan_timeline,
    slice_events,
)
from slipstream.schemas.topics import TopicCatalog
from slipstream.settings import Settings

TRAIN, VALID = ("2018-07-25", "2018-08-01"), ("2018-08-08", "2018-08-15")
NOW = datetime(2026, 11, 22, 14, 37, 5, 123456, tzinfo=UTC)


# ---------------------------------------------------------------------------------------------- timeline
def test_live_starts_now_in_the_week_after_validation() -> None:
    timeline = plan_timeline(micros(NOW), TRAIN, VALID)
    assert timeline.live_start_us + timeline.shift_us == micros(NOW)
    assert timeline.shift_us % WEEK_US == 0
    assert day_micros(VALID[1]) <= timeline.live_start_us < day_micros(VALID[1]) + WEEK_US
    assert timeline.warm_start_us == timeline.live_start_us - REACH_US


def test_whole_weeks_keep_weekday_and_time_of_day() -> None:
    for hours in range(0, 24 * 9, 7):
        now = NOW + timedelta(hours=hours)
        timeline = plan_timeline(micros(now), TRAIN, VALID)
        simulated = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=timeline.live_start_us)
        assert (simulated.weekday(), simulated.time()) == (now.weekday(), now.time())


def test_reach_is_the_terminal_windows_37_days() -> None:
    assert REACH_US == 37 * DAY_US


def test_validation_in_the_future_is_refused() -> None:
    with pytest.raises(DemoError, match="2030-01-08"):
        plan_timeline(micros(NOW), ("2030-01-01", "2030-01-02"), ("2030-01-02", "2030-01-08"))


def _frames(live_us: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Six transactions a day apart around ``live_us``, each labelled 2 days later; tx 3 and 5 are frauds."""
    times = [live_us + (i - 3) * DAY_US for i in range(6)]
    stamps = pd.to_datetime(times, unit="us", utc=True)
    tx = pd.DataFrame(
        {
            "transaction_id": np.arange(6),
            "event_time": stamps,
            "customer_id": np.arange(6) % 2,
            "terminal_id": np.arange(6) + 10,
            "amount": np.linspace(10.0, 60.0, 6),
            "tx_fraud": [0, 0, 0, 1, 0, 1],
        }
    )
    labels = pd.DataFrame(
        {
            "transaction_id": tx["transaction_id"],
            "customer_id": tx["customer_id"],
            "terminal_id": tx["terminal_id"],
            "tx_event_time": stamps,
            "event_time": stamps + pd.Timedelta(days=2),
            "is_fraud": tx["tx_fraud"].astype(bool),
            "fraud_scenario": tx["tx_fraud"].astype(np.int32),
        }
    )
    return tx.iloc[::-1].reset_index(drop=True), labels.iloc[::-1].reset_index(drop=True)  # order must not matter


def test_slice_splits_at_live_shifts_and_orders_by_known_time() -> None:
    live = day_micros("2018-08-20")
    shift = 400 * WEEK_US
    timeline = Timeline(TRAIN, VALID, live - 2 * DAY_US, live, shift)
    events = slice_events(*_frames(live), timeline)
    assert events["warm_tx"].columns["transaction_id"].tolist() == [1, 2]  # [live - 2 d, live)
    assert events["live_tx"].columns["transaction_id"].tolist() == [3, 4, 5]
    assert events["live_tx"].columns["tx_fraud"].tolist() == [1, 0, 1]
    assert events["live_tx"].columns["event_time"][0] == live + shift
    assert events["warm_labels"].columns["transaction_id"].tolist() == []  # known 2 days later: after live
    assert events["live_labels"].columns["transaction_id"].tolist() == [1, 2, 3, 4, 5]  # tx 0 is before warm-up
    label = events["live_labels"].record(0)
    assert label["event_time"] - label["tx_event_time"] == 2 * DAY_US
    assert label["event_time"] == live + shift  # tx 1 (live - 2 d) is known at live
    record = events["live_tx"].record(0)
    assert set(record) == {"transaction_id", "event_time", "customer_id", "terminal_id", "amount"}
    assert all(type(v) in (int, float) for v in record.values())  # plain Python values for the Avro encoder


def test_labels_go_out_before_the_first_later_transaction() -> None:
    tx = np.array([10, 20, 30], dtype=np.int64)
    labels = np.array([5, 20, 25, 40], dtype=np.int64)
    order = list(merge_order(tx, labels))
    assert order == [(False, 0), (True, 0), (False, 1), (True, 1), (False, 2), (True, 2)]  # label 40: after the end


# ---------------------------------------------------------------------------------------------- live numbers
def test_precision_recall_from_ground_truth() -> None:
    stats = LiveStats()
    now = time.perf_counter()
    for i, fraud in enumerate([True, True, False, False]):
        stats.on_sent({"transaction_id": i, "event_time": 1_000 + i, "amount": 1.0}, fraud, now)
    prediction = {"model_name": "fraud", "model_version": "7", "timings_us": {"total_us": 250.0}}
    for i, decision in enumerate([True, False, True, False]):
        stats.on_prediction({**prediction, "event_id": str(i), "decision": decision}, now + 0.010)
    stats.on_prediction({**prediction, "event_id": "0", "decision": True}, now + 0.020)  # re-delivered: once
    assert (stats.scored, stats.flagged, stats.caught, stats.frauds_scored) == (4, 2, 1, 2)
    assert stats.precision == pytest.approx(0.5)
    assert stats.recall == pytest.approx(0.5)
    assert stats.model == "fraud v7"
    assert stats.percentile("e2e_ms", 50) == pytest.approx(10.0, abs=0.01)
    assert stats.percentile("scorer_ms", 50) == pytest.approx(0.25)
    assert stats.shown_time_us == 1_003
    assert stats.last_tx["is_fraud"] is False


def test_freshness_counts_each_vector_once_and_empty_stats_are_nan() -> None:
    stats = LiveStats()
    assert np.isnan(stats.precision)
    assert np.isnan(stats.recall)
    assert np.isnan(stats.percentile("http_ms", 99))
    stats.on_sent({"transaction_id": 1, "event_time": 0}, False, 100.0)
    stats.on_vector({"event_id": "1"}, 100.005)
    stats.on_vector({"event_id": "1"}, 100.5)  # a correction of the same event: not a new sample
    stats.on_vector({"event_id": "999"}, 100.5)  # not ours
    assert list(stats.freshness_ms) == [pytest.approx(5.0)]


def test_rates_over_the_last_seconds_then_over_the_run() -> None:
    stats = LiveStats()
    assert stats.rates() == (0.0, 0.0)
    stats.produced, stats.scored = 100, 90
    stats._marks[0] = (stats._marks[0][0] - 1.0, 0, 0)  # as if the first mark were a second old
    produced, scored = stats.rates()
    assert produced == pytest.approx(100, rel=0.05)
    assert scored == pytest.approx(90, rel=0.05)
    stats.started, stats.stopped = 0.0, 10.0
    assert stats.rates() == (10.0, 9.0)


# ---------------------------------------------------------------------------------------------- namespace, runs
def test_namespace_is_a_valid_topic_prefix_and_feast_project() -> None:
    ns = Namespace.new("team.", NOW)
    assert ns.prefix.startswith("team.demo-20261122-143705-")
    assert ns.prefix.endswith(".")
    TopicCatalog(ns.prefix)  # validates the prefix
    assert ns.project.replace("_", "").isalnum()
    assert ns.project == "demo_" + ns.run_id.replace("-", "_")
    assert Namespace.new("", NOW).run_id != ns.run_id  # two runs in the same second differ


def test_child_env_points_children_at_this_run(tmp_path: os.PathLike[str]) -> None:
    settings = Settings(
        state_dir=tmp_path,
        kafka_bootstrap_servers="broker:9092",
        redis_url="redis://cache:6379/0",
    )
    ns = Namespace.new("", NOW)
    env = child_env(Slipstream(settings), ns)
    assert env["SLIPSTREAM_TOPIC_PREFIX"] == ns.prefix
    assert env["SLIPSTREAM_FEAST_PROJECT"] == ns.project
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "broker:9092"
    assert env["REDIS_URL"] == "redis://cache:6379/0"
    assert os.path.isabs(env["SLIPSTREAM_STATE_DIR"])


def test_a_run_file_is_stale_once_its_process_is_gone(tmp_path: os.PathLike[str]) -> None:
    from pathlib import Path

    runs = RunFiles(Path(tmp_path))
    assert runs.stale() == []
    mine = Namespace.new("", NOW)
    runs.claim(mine)
    assert runs.stale() == []  # this process lives
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    dead = Namespace.new("", NOW)
    path = runs.claim(dead)
    path.write_text(path.read_text().replace(str(os.getpid()), done.stdout.decode().strip()))
    stale = runs.stale()
    assert [ns for _, ns in stale] == [dead]


def test_children_of_lists_live_children_only() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in children_of(os.getpid())
    finally:
        child.kill()
        child.wait()
    assert child.pid not in children_of(os.getpid())


def test_processes_of_a_run_are_found_wherever_they_are_and_stopped() -> None:
    run_id = f"test-{os.getpid()}-{time.monotonic_ns()}"
    env = {**os.environ, RUN_VARIABLE: run_id}
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)
    try:
        deadline = time.monotonic() + 5
        while child.pid not in processes_of_run(run_id) and time.monotonic() < deadline:
            time.sleep(0.05)  # the exec replaces the environment a moment after the fork
        assert processes_of_run(run_id) == [child.pid]
        assert processes_of_run(run_id + "-other") == []
        assert terminate([child.pid], timeout=5) == []
        assert child.wait(5) == -15
    finally:
        child.kill()
        child.wait()
    assert processes_of_run(run_id) == []


class _Quiet:
    def step(self, text: str) -> None: ...
    def done(self, text: str) -> None: ...
    def warm(self, applied: int, total: int) -> None: ...
    def live(self, stats: LiveStats) -> None: ...


class _Reached(Exception):
    pass


def test_kafka_and_redis_do_not_carry_the_run_but_what_follows_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The platform the demo starts outlives the run: were it marked as the run's, the run would end reporting it
    left running (and fail), and a later run's sweep of this one would stop it."""
    monkeypatch.setenv(RUN_VARIABLE, "x")  # recorded, so the value the run sets is undone after the test
    monkeypatch.delenv(RUN_VARIABLE)
    marked_at_up: list[str | None] = []

    def up() -> None:
        marked_at_up.append(os.environ.get(RUN_VARIABLE))

    def apply_topics(_contracts: object) -> None:
        raise _Reached  # the topics, the producer and the engine's processes come next

    app = SimpleNamespace(
        settings=SimpleNamespace(topic_prefix="", state_dir=tmp_path),
        external=False,
        platform=SimpleNamespace(up=up),
        with_prefix=lambda prefix: None,
        apply_topics=apply_topics,
    )
    run = DemoRun(cast(Any, app), DemoOptions(), _Quiet(), threading.Event())
    with pytest.raises(_Reached):
        run._platform()
    assert marked_at_up == [None]
    assert os.environ[RUN_VARIABLE] == run.ns.run_id
