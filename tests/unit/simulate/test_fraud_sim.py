"""The fraud simulator on small configs, checked against a literal, slow transcription of the book's recipe."""

from __future__ import annotations

import random
import re
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from slipstream.streams.simulate import (
    TX_COLUMNS,
    FraudSimConfig,
    label_events,
    simulate_transactions,
    to_transaction_events,
)
from slipstream.streams.simulate.introsort import reference_argsort

# Dense enough for same-second ties (the sort matters) and for all three fraud scenarios.
DENSE = FraudSimConfig(n_customers=400, n_terminals=200, nb_days=15, radius=20.0)
SPARSE = FraudSimConfig(n_customers=300, n_terminals=20, nb_days=10)  # most customers reach no terminal


def _book_profiles(config: FraudSimConfig) -> tuple[list[tuple[float, float, float, float, float]], np.ndarray]:
    rs = np.random.RandomState(0)
    customers = []
    for _ in range(config.n_customers):
        x, y = rs.uniform(0, 100), rs.uniform(0, 100)
        mean_amount = rs.uniform(5, 100)
        customers.append((x, y, mean_amount, mean_amount / 2, rs.uniform(0, 4)))
    rs = np.random.RandomState(1)
    terminals = np.array([[rs.uniform(0, 100), rs.uniform(0, 100)] for _ in range(config.n_terminals)])
    return customers, terminals


def _book_reach(x: float, y: float, terminals: np.ndarray, radius: float) -> list[int]:
    dist = np.sqrt(np.sum(np.square(np.array([x, y]) - terminals), axis=1))
    return [int(t) for t in np.where(dist < radius)[0]]


def _book_simulation(config: FraudSimConfig) -> pd.DataFrame:
    """The recipe step by step: scalar draws, pandas sampling, classic-introsort ``sort_values``."""
    customers, terminals = _book_profiles(config)
    rows: list[tuple[int, int, int, int, float]] = []
    for cid, (x, y, mean_amount, std_amount, mean_nb_tx) in enumerate(customers):
        available = _book_reach(x, y, terminals, config.radius)
        rnd, rs = random.Random(cid), np.random.RandomState(cid)
        for day in range(config.nb_days):
            for _ in range(rs.poisson(mean_nb_tx)):
                time_tx = int(rs.normal(86400 / 2, 20000))
                if 0 < time_tx < 86400:
                    amount = rs.normal(mean_amount, std_amount)
                    if amount < 0:
                        amount = rs.uniform(0, mean_amount * 2)
                    amount = float(np.round(amount, decimals=2))
                    if available:
                        rows.append((time_tx + day * 86400, day, cid, rnd.choice(available), amount))
    df = pd.DataFrame(rows, columns=["TX_TIME_SECONDS", "TX_TIME_DAYS", "CUSTOMER_ID", "TERMINAL_ID", "TX_AMOUNT"])
    df = df.iloc[reference_argsort(df["TX_TIME_SECONDS"].tolist())].reset_index(drop=True)
    df["TX_FRAUD_SCENARIO"] = 0
    df.loc[df.TX_AMOUNT > 220, "TX_FRAUD_SCENARIO"] = 1
    terminal_ids, customer_ids = pd.Series(range(config.n_terminals)), pd.Series(range(config.n_customers))
    for day in range(int(df.TX_TIME_DAYS.max())):
        hit = terminal_ids.sample(n=2, random_state=day)
        window = (df.TX_TIME_DAYS >= day) & (df.TX_TIME_DAYS < day + 28)
        df.loc[window & df.TERMINAL_ID.isin(hit), "TX_FRAUD_SCENARIO"] = 2
    for day in range(int(df.TX_TIME_DAYS.max())):
        hit_customers = customer_ids.sample(n=3, random_state=day).values
        window = (df.TX_TIME_DAYS >= day) & (df.TX_TIME_DAYS < day + 14)
        compromised = df[window & df.CUSTOMER_ID.isin(hit_customers)]
        picked = random.Random(day).sample(list(compromised.index.values), k=int(len(compromised) / 3))
        df.loc[picked, "TX_AMOUNT"] = df.loc[picked, "TX_AMOUNT"] * 5
        df.loc[picked, "TX_FRAUD_SCENARIO"] = 3
    return df


@pytest.fixture(scope="module")
def dense() -> pd.DataFrame:
    return simulate_transactions(DENSE)


def test_matches_the_literal_recipe(dense: pd.DataFrame) -> None:
    book = _book_simulation(DENSE)
    seconds = dense["TX_TIME_SECONDS"].to_numpy()
    assert np.count_nonzero(seconds[1:] == seconds[:-1]) > 20, "config too sparse to exercise tie order"
    assert set(dense["TX_FRAUD_SCENARIO"]) == {0, 1, 2, 3}
    for column in book.columns:
        np.testing.assert_array_equal(dense[column].to_numpy(), book[column].to_numpy(), err_msg=column)


def test_columns_and_dtypes(dense: pd.DataFrame) -> None:
    assert tuple(dense.columns) == TX_COLUMNS
    assert dense["TRANSACTION_ID"].tolist() == list(range(len(dense)))
    assert str(dense["TX_DATETIME"].dtype) == "datetime64[ns]"
    assert dense["TX_AMOUNT"].dtype == np.float64
    for column in ("TRANSACTION_ID", "CUSTOMER_ID", "TERMINAL_ID", "TX_TIME_SECONDS", "TX_TIME_DAYS", "TX_FRAUD"):
        assert dense[column].dtype == np.int64, column


def test_same_config_same_frame(dense: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(simulate_transactions(DENSE), dense)


def test_customers_without_terminals_have_no_transactions() -> None:
    customers, terminals = _book_profiles(SPARSE)
    with_terminal = {cid for cid, c in enumerate(customers) if _book_reach(c[0], c[1], terminals, SPARSE.radius)}
    assert 0 < len(with_terminal) < SPARSE.n_customers / 2
    df = simulate_transactions(SPARSE)
    assert len(df) > 0
    assert set(df["CUSTOMER_ID"]) <= with_terminal


def test_times_strictly_inside_the_day_and_consistent(dense: pd.DataFrame) -> None:
    seconds = dense["TX_TIME_SECONDS"].to_numpy()
    in_day = seconds % 86400
    assert in_day.min() > 0
    assert in_day.max() < 86400
    np.testing.assert_array_equal(dense["TX_TIME_DAYS"].to_numpy(), seconds // 86400)
    expected = pd.Timestamp(DENSE.start_date) + pd.to_timedelta(seconds, unit="s")
    np.testing.assert_array_equal(dense["TX_DATETIME"].to_numpy(), expected.to_numpy())
    assert dense["TX_DATETIME"].is_monotonic_increasing


def test_amounts_non_negative_with_two_decimals(dense: pd.DataFrame) -> None:
    amount = dense["TX_AMOUNT"].to_numpy()
    assert amount.min() >= 0
    untouched = amount[dense["TX_FRAUD_SCENARIO"].to_numpy() != 3]
    np.testing.assert_array_equal(np.round(untouched, 2), untouched)
    cents = amount * 100
    np.testing.assert_allclose(cents, np.rint(cents), atol=1e-6)


def test_scenario_rules(dense: pd.DataFrame) -> None:
    scenario = dense["TX_FRAUD_SCENARIO"].to_numpy()
    amount = dense["TX_AMOUNT"].to_numpy()
    assert (amount[scenario == 1] > 220).all()
    assert (amount[scenario == 0] <= 220).all()
    np.testing.assert_array_equal(dense["TX_FRAUD"].to_numpy(), (scenario > 0).astype(np.int64))


def test_progress_reports_every_customer() -> None:
    calls: list[tuple[int, int]] = []
    config = FraudSimConfig(n_customers=7, n_terminals=50, nb_days=3, radius=30.0)
    simulate_transactions(config, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 7) for i in range(1, 8)]


def test_labels_arrive_exactly_label_delay_later(dense: pd.DataFrame) -> None:
    config = FraudSimConfig(n_customers=400, n_terminals=200, nb_days=15, radius=20.0, label_delay=timedelta(hours=3))
    labels = label_events(dense, config)
    assert list(labels.columns) == [
        "transaction_id",
        "customer_id",
        "terminal_id",
        "tx_event_time",
        "event_time",
        "is_fraud",
        "fraud_scenario",
    ]
    assert len(labels) == len(dense)
    for column in ("tx_event_time", "event_time"):
        dtype = labels[column].dtype
        assert isinstance(dtype, pd.DatetimeTZDtype) and str(dtype.tz) == "UTC", column
    assert ((labels["event_time"] - labels["tx_event_time"]) == pd.Timedelta(hours=3)).all()
    assert (labels["tx_event_time"].dt.tz_localize(None) == dense["TX_DATETIME"]).all()
    assert labels["is_fraud"].dtype == np.bool_
    np.testing.assert_array_equal(labels["is_fraud"].to_numpy(), dense["TX_FRAUD"].to_numpy() == 1)
    np.testing.assert_array_equal(labels["fraud_scenario"].to_numpy(), dense["TX_FRAUD_SCENARIO"].to_numpy())
    np.testing.assert_array_equal(labels["transaction_id"].to_numpy(), dense["TRANSACTION_ID"].to_numpy())


def test_default_label_delay_is_seven_days(dense: pd.DataFrame) -> None:
    labels = label_events(dense.head(5), FraudSimConfig())
    assert ((labels["event_time"] - labels["tx_event_time"]) == pd.Timedelta(days=7)).all()


def test_transaction_events_follow_the_contract(dense: pd.DataFrame) -> None:
    events = to_transaction_events(dense)
    assert list(events.columns) == ["transaction_id", "event_time", "customer_id", "terminal_id", "amount"]
    assert isinstance(events["event_time"].dtype, pd.DatetimeTZDtype)
    assert str(events["event_time"].dt.tz) == "UTC"
    assert events["event_time"].iloc[0] == dense["TX_DATETIME"].iloc[0].tz_localize("UTC")
    assert events["transaction_id"].dtype == np.int64
    assert events["customer_id"].dtype == np.int64
    assert events["terminal_id"].dtype == np.int64
    assert events["amount"].dtype == np.float64
    np.testing.assert_array_equal(events["amount"].to_numpy(), dense["TX_AMOUNT"].to_numpy())


def test_missing_columns_are_named(dense: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="TX_AMOUNT"):
        to_transaction_events(dense.drop(columns=["TX_AMOUNT"]))
    with pytest.raises(ValueError, match="TX_FRAUD_SCENARIO"):
        label_events(dense.drop(columns=["TX_FRAUD_SCENARIO"]), DENSE)


def test_defaults_are_the_books() -> None:
    config = FraudSimConfig()
    assert (config.n_customers, config.n_terminals, config.nb_days) == (5000, 10000, 183)
    assert (config.start_date, config.radius, config.label_delay) == ("2018-04-01", 5.0, timedelta(days=7))


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("n_customers", 0),
        ("n_customers", -3),
        ("n_customers", True),
        ("n_customers", 2.5),
        ("n_customers", 2),
        ("n_terminals", 0),
        ("n_terminals", 1),
        ("nb_days", -1),
        ("radius", 0.0),
        ("radius", -1.0),
        ("radius", float("nan")),
        ("radius", float("inf")),
        ("start_date", "2018-13-01"),
        ("start_date", "yesterday"),
        ("start_date", ""),
        ("label_delay", timedelta(seconds=-1)),
    ],
)
def test_config_rejects_bad_values(field: str, bad: Any) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(bad))) as info:
        FraudSimConfig(**{field: bad})
    assert field in str(info.value)
