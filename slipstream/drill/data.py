"""A drill's events and clock, pure: the transactions and labels (simulated with a drift scenario, or a user's files
in the transaction and label contracts), when live starts, and which events warm the engine up.

Timeline (UTC midnights): the champion is trained as `slipstream train` would at the live start ``L`` — on the
``train_days`` before ``L - 14 d``, validated on ``[L - 14 d, L - 7 d)`` (labels of the last week are not in yet) —
with the 37 days every feature window reaches before its first training day. The engine is warmed with the 37 days
before ``L``; everything from ``L`` on streams live, through every processor, at accelerated event time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from slipstream.demo.timeline import DAY_US, REACH_US, Timeline, iso, micros, us_of
from slipstream.drill.exceptions import DrillError

if TYPE_CHECKING:
    import pandas as pd

VALID_DAYS = 7
DELAY_DAYS = 7
TX_COLUMNS = ("transaction_id", "event_time", "customer_id", "terminal_id", "amount")
LABEL_COLUMNS = ("transaction_id", "customer_id", "terminal_id", "tx_event_time", "event_time", "is_fraud")


@dataclass(frozen=True, slots=True)
class DrillData:
    tx: pd.DataFrame  # TX_COLUMNS + tx_fraud (0 when unknown)
    labels: pd.DataFrame  # LABEL_COLUMNS + fraud_scenario (0 when unknown)
    timeline: Timeline
    drift_start_us: int | None
    end_us: int

    def describe(self) -> dict[str, object]:
        t = self.timeline
        return {
            "train": list(t.train),
            "valid": list(t.valid),
            "warm_start": iso(t.warm_start_us),
            "live_start": iso(t.live_start_us),
            "drift_start": iso(self.drift_start_us) if self.drift_start_us is not None else None,
            "end": iso(self.end_us),
            "transactions": len(self.tx),
            "labels": len(self.labels),
        }


def history_days(train_days: int) -> int:
    """Days of events a drill needs before its live start."""
    return train_days + VALID_DAYS + DELAY_DAYS + REACH_US // DAY_US


def _day(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, tz=UTC).date().isoformat()


def plan(first_us: int, train_days: int) -> Timeline:
    live = (first_us // DAY_US + history_days(train_days) + (1 if first_us % DAY_US else 0)) * DAY_US
    valid = (_day(live - (VALID_DAYS + DELAY_DAYS) * DAY_US), _day(live - DELAY_DAYS * DAY_US))
    train = (_day(live - (VALID_DAYS + DELAY_DAYS + train_days) * DAY_US), valid[0])
    return Timeline(train, valid, live - REACH_US, live, 0)


def simulated(
    scenario: str,
    *,
    days: int,
    drift_day: int,
    train_days: int,
    customers: int,
    realistic_labels: bool,
) -> DrillData:
    """The Fraud Handbook simulation with ``scenario`` starting ``drift_day`` days after the live start."""

    from slipstream.streams.simulate import DriftScenario, FraudSimConfig, label_events, simulate_transactions
    from slipstream.streams.simulate.fraud import to_transaction_events

    before = history_days(train_days)
    config = FraudSimConfig(n_customers=customers, n_terminals=2 * customers, nb_days=before + days)
    drift = None if scenario == "none" else before + drift_day
    # the book's card-testing size (10 cards a day) is for its 5,000 customers: a smaller world gets as many per card
    cards = max(1, round(10 * customers / 5000))
    table = simulate_transactions(config, scenario=DriftScenario(scenario, start_day=drift or 1, cards_per_day=cards))
    tx = to_transaction_events(table)
    tx["tx_fraud"] = table["TX_FRAUD"].to_numpy()
    labels = label_events(table, config)
    if realistic_labels:
        from slipstream.models.dataset import realistic_labels as retime

        labels = retime(labels)
    start = micros(datetime.fromisoformat(config.start_date).replace(tzinfo=UTC))
    timeline = plan(start, train_days)
    drift_us = None if drift is None else start + drift * DAY_US
    return DrillData(tx, labels.reset_index(drop=True), timeline, drift_us, start + (before + days) * DAY_US)


def from_files(events: Path, labels: Path, drift_start: str | None, train_days: int) -> DrillData:
    """A user's transactions and labels (parquet or JSON lines, in the contracts' columns)."""
    import pandas as pd

    tx = _read(events, TX_COLUMNS, "--events")
    lab = _read(labels, LABEL_COLUMNS, "--labels")
    for frame, columns in ((tx, ("event_time",)), (lab, ("event_time", "tx_event_time"))):
        for column in columns:
            frame[column] = pd.to_datetime(frame[column], utc=True)
    if "tx_fraud" not in tx.columns:
        known = dict(zip(lab["transaction_id"].tolist(), lab["is_fraud"].astype(bool).tolist(), strict=True))
        tx["tx_fraud"] = np.fromiter((known.get(t, False) for t in tx["transaction_id"].tolist()), dtype=np.int64)
    if "fraud_scenario" not in lab.columns:
        lab["fraud_scenario"] = 0
    tx = tx.sort_values(["event_time", "transaction_id"], kind="stable").reset_index(drop=True)
    times = us_of(tx["event_time"])
    timeline = plan(int(times[0]), train_days)
    end = int(times[-1]) + 1
    if end <= timeline.live_start_us:
        msg = (
            f"--events: {events} spans {_day(int(times[0]))}..{_day(end)}; a drill needs "
            f"{history_days(train_days)} days before its live start and some after"
        )
        raise DrillError(msg)
    drift_us = None
    if drift_start is not None:
        try:
            drift_us = micros(pd.Timestamp(drift_start, tz="UTC").to_pydatetime())
        except ValueError as exc:
            msg = f"--drift-start {drift_start!r} is not a date or time (YYYY-MM-DD[THH:MM])"
            raise DrillError(msg) from exc
        if not timeline.live_start_us <= drift_us < end:
            msg = (
                f"--drift-start {drift_start!r} must lie in the live part of the stream, "
                f"{iso(timeline.live_start_us)[:10]}..{_day(end)} (the first {history_days(train_days)} days train "
                "and warm up the champion)"
            )
            raise DrillError(msg)
    return DrillData(tx, lab.reset_index(drop=True), timeline, drift_us, end)


def _read(path: Path, columns: tuple[str, ...], option: str) -> pd.DataFrame:
    import pandas as pd

    if not path.is_file():
        msg = f"{option}: {path} does not exist"
        raise DrillError(msg)
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif path.suffix in (".jsonl", ".ndjson"):
        frame = pd.read_json(path, lines=True)
    else:
        msg = f"{option}: {path} must be .parquet, .jsonl or .ndjson, got {path.suffix or 'no suffix'!r}"
        raise DrillError(msg)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        msg = f"{option}: {path} lacks columns {missing}; it has {list(frame.columns)}"
        raise DrillError(msg)
    return frame
