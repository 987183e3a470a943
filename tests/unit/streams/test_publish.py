from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from slipstream.schemas.exceptions import SerializationError
from slipstream.schemas.registry import SchemaRegistry
from slipstream.streams.publish import Pacer, count_rows, read_batches

TX = SchemaRegistry.load().get("transaction")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_pacer_is_open_loop() -> None:
    clock = FakeClock()
    pacer = Pacer(10.0, clock=clock, sleep=clock.sleep)
    pacer.wait(0)
    pacer.wait(5)
    assert clock.slept == [pytest.approx(0.5)]
    clock.now += 2.0  # fell behind schedule: no waiting, no slow-down to catch up
    pacer.wait(6)
    assert len(clock.slept) == 1


def test_pacer_refuses_a_non_positive_rate() -> None:
    with pytest.raises(ValueError, match="rate must be > 0 events/s, got 0"):
        Pacer(0)


def _frame(tz: str | None) -> pd.DataFrame:
    times = pd.to_datetime(["2018-04-01 00:00:31", "2018-04-01 00:02:10"])
    return pd.DataFrame(
        {
            "transaction_id": [0, 1],
            "event_time": times.tz_localize(tz) if tz else times,
            "customer_id": [596, 4961],
            "terminal_id": [3156, 3412],
            "amount": [57.16, 81.51],
            "extra": ["a", "b"],
        }
    )


def test_parquet_rows_become_records_with_epoch_micros(tmp_path: Path) -> None:
    path = tmp_path / "tx.parquet"
    _frame("UTC").to_parquet(path)
    assert count_rows(path) == 2
    (batch,) = list(read_batches(path, TX))
    expected = int(datetime(2018, 4, 1, 0, 0, 31, tzinfo=UTC).timestamp() * 1_000_000)
    assert batch[0] == {
        "transaction_id": 0,
        "event_time": expected,
        "customer_id": 596,
        "terminal_id": 3156,
        "amount": 57.16,
    }


def test_naive_parquet_timestamps_are_refused_unless_assumed_utc(tmp_path: Path) -> None:
    path = tmp_path / "naive.parquet"
    _frame(None).to_parquet(path)
    with pytest.raises(SerializationError, match="column 'event_time' .* naive timestamps"):
        list(read_batches(path, TX))
    assert len(next(read_batches(path, TX, assume_utc=True))) == 2


def test_jsonl_timestamps_need_a_zone(tmp_path: Path) -> None:
    path = tmp_path / "tx.jsonl"
    row = {
        "transaction_id": 1,
        "event_time": "2018-04-01T00:00:31+00:00",
        "customer_id": 1,
        "terminal_id": 2,
        "amount": 1.0,
    }
    path.write_text(json.dumps(row) + "\n\n" + json.dumps(row | {"event_time": "2018-04-01T00:00:31"}) + "\n")
    assert count_rows(path) == 2
    with pytest.raises(SerializationError, match=r"tx.jsonl:3: event_time='2018-04-01T00:00:31' has no time zone"):
        list(read_batches(path, TX))


def test_unknown_file_type_is_named(tmp_path: Path) -> None:
    path = tmp_path / "tx.csv"
    path.write_text("a,b\n")
    with pytest.raises(SerializationError, match="must end in one of .parquet"):
        list(read_batches(path, TX))
