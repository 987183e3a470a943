"""The demo's data and clock, pure: this run's namespace, when live starts, which events warm up and which go live.

Simulated time is moved to shown time by whole weeks (``Timeline.shift_us``), so the weekday and the time of day of
every event — two of the model's features — stay what the model was trained on.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from slipstream.demo.exceptions import DemoError
from slipstream.features.definitions import FRAUD

if TYPE_CHECKING:
    import pandas as pd

WEEK_US = 7 * 86_400 * 1_000_000
DAY_US = 86_400 * 1_000_000
REACH_US = max(view.reach_us for view in FRAUD.views)  # 37 days: terminal windows of 30 days, 7 days back
TX_FIELDS = ("transaction_id", "event_time", "customer_id", "terminal_id", "amount")
LABEL_FIELDS = ("transaction_id", "customer_id", "terminal_id", "tx_event_time", "event_time", "is_fraud")
LABEL_FIELDS_ALL = (*LABEL_FIELDS, "fraud_scenario")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
I64 = npt.NDArray[np.int64]


def micros(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(microseconds=1)


def day_micros(day: str) -> int:
    """``"2018-08-15"`` -> its UTC midnight in epoch µs."""
    return micros(datetime.fromisoformat(day).replace(tzinfo=UTC))


def iso(us: int) -> str:
    return (_EPOCH + timedelta(microseconds=us)).isoformat()


def labels_path(data: Path) -> Path:
    """Where the simulator writes the labels of ``X.parquet``: ``X.labels.parquet``."""
    return data.with_name(data.stem + ".labels.parquet")


@dataclass(frozen=True, slots=True)
class Namespace:
    run_id: str
    prefix: str  # topics
    project: str  # Feast project: the suffix of every Redis key the engine writes

    @classmethod
    def new(cls, base_prefix: str, now: datetime) -> Namespace:
        run_id = f"{now.strftime('%Y%m%d-%H%M%S')}-{os.urandom(2).hex()}"
        return cls(run_id, f"{base_prefix}demo-{run_id}.", "demo_" + run_id.replace("-", "_"))


@dataclass(frozen=True, slots=True)
class Timeline:
    """Simulated instants (epoch µs) of the run; ``shift_us`` (whole weeks) moves simulated time to shown time."""

    train: tuple[str, str]
    valid: tuple[str, str]
    warm_start_us: int
    live_start_us: int
    shift_us: int


def plan_timeline(now_us: int, train: tuple[str, str], valid: tuple[str, str], warmup_us: int = REACH_US) -> Timeline:
    """Live starts at the first simulated instant after validation that is ``now`` minus whole weeks."""
    valid_end = day_micros(valid[1])
    weeks = (now_us - valid_end) // WEEK_US
    if weeks < 0:
        msg = f"the validation window ends {valid[1]}, after now: the simulated data must lie in the past"
        raise DemoError(msg)
    live_start = now_us - weeks * WEEK_US
    return Timeline(train, valid, live_start - warmup_us, live_start, weeks * WEEK_US)


@dataclass(slots=True)
class Events:
    """One topic's events as columns, in send order, times already shifted to shown time (µs)."""

    columns: dict[str, npt.NDArray[Any]]
    fields: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.columns[self.fields[0]])

    def record(self, i: int) -> dict[str, Any]:
        return {name: self.columns[name][i].item() for name in self.fields}


def us_of(series: pd.Series) -> I64:
    """A column of timezone-aware times as epoch µs."""
    return np.asarray(series.to_numpy(dtype="datetime64[us]").astype(np.int64))


def slice_events(tx: pd.DataFrame, labels: pd.DataFrame, timeline: Timeline) -> dict[str, Events]:
    """``warm``/``live`` transactions and labels of the timeline, shifted; labels ordered by when they are known."""
    t, lt, ltx = us_of(tx["event_time"]), us_of(labels["event_time"]), us_of(labels["tx_event_time"])
    start, live = timeline.warm_start_us, timeline.live_start_us
    out: dict[str, Events] = {}
    parts = {
        "warm_tx": (tx, (t >= start) & (t < live), t, TX_FIELDS),
        "live_tx": (tx, t >= live, t, TX_FIELDS),
        "warm_labels": (labels, (ltx >= start) & (lt < live), lt, LABEL_FIELDS_ALL),
        "live_labels": (labels, (lt >= live) & (ltx >= start), lt, LABEL_FIELDS_ALL),
    }
    for name, (frame, mask, times, fields) in parts.items():
        order = np.argsort(times[mask], kind="stable")
        rows = frame.loc[mask]
        columns: dict[str, npt.NDArray[Any]] = {}
        for column in (*fields, "tx_fraud") if frame is tx else fields:
            values = (
                us_of(rows[column]) + timeline.shift_us if column.endswith("event_time") else rows[column].to_numpy()
            )
            columns[column] = np.asarray(values)[order]
        out[name] = Events(columns, fields)
    return out


def merge_order(tx_times: I64, label_times: I64) -> Iterator[tuple[bool, int]]:
    """Send order of a live stream: ``(True, i)`` for transaction ``i``, ``(False, j)`` for label ``j``; a label goes
    out before the first transaction later than it."""
    labels = label_times.tolist()
    j = 0
    for i, t in enumerate(tx_times.tolist()):
        while j < len(labels) and labels[j] <= t:
            yield False, j
            j += 1
        yield True, i
