"""The training frame is point in time: no row's features use an event after it (brute-force recounts)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from slipstream.features.definitions.fraud import FRAUD, WINDOW_DAYS
from slipstream.models.dataset import fraud_training_frame
from slipstream.models.evaluation import EXPECTED_TEST_SET, Fold, fold_test_set, fold_train_set
from tests.model.conftest import FraudData

pytestmark = pytest.mark.model

DAY = pd.Timedelta(days=1)
WEEK = pd.Timedelta(days=7)


def _sample(frame: pd.DataFrame, n: int = 200) -> pd.DataFrame:
    late = frame[frame["event_time"] >= pd.Timestamp("2018-06-01", tz="UTC")]
    return late.sample(n=n, random_state=0)


def test_columns_and_labels(training_frame: pd.DataFrame, fraud_data: FraudData) -> None:
    assert list(training_frame.columns) == [
        "transaction_id",
        "customer_id",
        "event_time",
        "label",
        *FRAUD.model_input,
        "label_time",
    ]
    assert len(training_frame) == len(fraud_data.transactions)
    assert int(training_frame["label"].sum()) == int(fraud_data.transactions["tx_fraud"].sum())


def test_customer_features_equal_a_brute_force_recount(training_frame: pd.DataFrame, fraud_data: FraudData) -> None:
    tx = fraud_data.transactions
    by_customer = {c: rows for c, rows in tx.groupby("customer_id")}
    for values in _sample(training_frame).to_dict("records"):
        mine = by_customer[values["customer_id"]]
        t = pd.Timestamp(values["event_time"])
        for n in WINDOW_DAYS:
            inside = mine[(mine["event_time"] > t - n * DAY) & (mine["event_time"] <= t)]
            # same-second twins: only those up to this transaction (by id) count
            inside = inside[(inside["event_time"] < t) | (inside["transaction_id"] <= values["transaction_id"])]
            assert values[f"CUSTOMER_ID_NB_TX_{n}DAY_WINDOW"] == len(inside)
            assert values[f"CUSTOMER_ID_AVG_AMOUNT_{n}DAY_WINDOW"] == pytest.approx(inside["amount"].mean(), abs=1e-9)


def test_terminal_features_use_only_transactions_a_week_old(
    training_frame: pd.DataFrame, fraud_data: FraudData
) -> None:
    tx = fraud_data.transactions
    terminal = tx.set_index("transaction_id")["terminal_id"]
    by_terminal = {c: rows for c, rows in tx.groupby("terminal_id")}
    for values in _sample(training_frame).to_dict("records"):
        mine = by_terminal[terminal[values["transaction_id"]]]
        t = pd.Timestamp(values["event_time"])
        for n in WINDOW_DAYS:
            inside = mine[(mine["event_time"] > t - WEEK - n * DAY) & (mine["event_time"] <= t - WEEK)]
            assert values[f"TERMINAL_ID_NB_TX_{n}DAY_WINDOW"] == len(inside)
            risk = inside["tx_fraud"].mean() if len(inside) else 0.0
            assert values[f"TERMINAL_ID_RISK_{n}DAY_WINDOW"] == pytest.approx(risk, abs=1e-9)


def test_handbook_test_set_matches_the_published_one(training_frame: pd.DataFrame) -> None:
    fold = Fold.testing("2018-08-08")
    train = fold_train_set(training_frame, fold)
    assert (len(train), int(train["label"].sum())) == (67_240, 598)
    test = fold_test_set(training_frame, fold)
    assert {"n_transactions": len(test), "n_frauds": int(test["label"].sum())} == EXPECTED_TEST_SET


def test_realistic_training_labels_hide_late_frauds(training_frame: pd.DataFrame) -> None:
    frame = training_frame.copy()
    frame["label_time"] = frame["event_time"] + pd.Timedelta(days=10)  # every label after the gap
    train = fold_train_set(frame, Fold.testing("2018-08-08"), "realistic")
    last_day = train["event_time"] >= pd.Timestamp("2018-07-29", tz="UTC")  # + 10 days > 08-08
    assert (train.loc[last_day, "label"] == 0).all()
    assert np.array_equal(
        train.loc[~last_day, "label"].to_numpy(),
        fold_train_set(training_frame, Fold.testing("2018-08-08")).loc[~last_day.to_numpy(), "label"].to_numpy(),
    )


def test_realistic_terminal_risk_counts_only_labels_arrived(fraud_data: FraudData) -> None:
    end = pd.Timestamp("2018-05-15", tz="UTC")
    tx = fraud_data.transactions[fraud_data.transactions["event_time"] < end]
    labels = fraud_data.labels[fraud_data.labels["tx_event_time"] < end]
    frame = fraud_training_frame(tx, labels, label_delay="realistic", with_label_time=True)
    arrival = frame.set_index("transaction_id")["label_time"]
    assert (
        arrival.loc[tx.loc[tx["tx_fraud"] == 0, "transaction_id"]]
        > tx.set_index("transaction_id").loc[tx.loc[tx["tx_fraud"] == 0, "transaction_id"], "event_time"]
        + pd.Timedelta(days=29)
    ).all()
    known = tx.assign(label_time=arrival.reindex(tx["transaction_id"]).to_numpy())
    terminal = tx.set_index("transaction_id")["terminal_id"]
    by_terminal = {c: rows for c, rows in known.groupby("terminal_id")}
    sample = frame[frame["event_time"] >= pd.Timestamp("2018-05-01", tz="UTC")].sample(n=200, random_state=2)
    for values in sample.to_dict("records"):
        mine = by_terminal[terminal[values["transaction_id"]]]
        t = pd.Timestamp(values["event_time"])
        for n in WINDOW_DAYS:
            inside = mine[(mine["event_time"] > t - WEEK - n * DAY) & (mine["event_time"] <= t - WEEK)]
            frauds = int(((inside["tx_fraud"] == 1) & (inside["label_time"] <= t)).sum())
            risk = frauds / len(inside) if len(inside) else 0.0
            assert values[f"TERMINAL_ID_RISK_{n}DAY_WINDOW"] == pytest.approx(risk, abs=1e-9)
