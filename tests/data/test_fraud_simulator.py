"""The full default simulation against the Fraud Detection Handbook's published data set."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from slipstream.streams.simulate import FraudSimConfig, label_events, simulate_transactions, to_transaction_events

pytestmark = pytest.mark.data

# sha256 over TX_TIME_SECONDS, CUSTOMER_ID, TERMINAL_ID ('<i8'), TX_AMOUNT ('<f8'), TX_FRAUD_SCENARIO ('<i8'),
# each column in TRANSACTION_ID order, computed from the book's published per-day pickles.
PUBLISHED_DIGEST = "c4c486e75cd6b97b84afa5c3e8f2be74c0d86ff676bc09653da175ad3b9922e1"


@pytest.fixture(scope="module")
def book() -> pd.DataFrame:
    return simulate_transactions(FraudSimConfig())


def test_published_counts(book: pd.DataFrame) -> None:
    assert len(book) == 1_754_155
    assert int(book["TX_FRAUD"].sum()) == 14_681
    per_scenario = book["TX_FRAUD_SCENARIO"].value_counts().to_dict()
    assert per_scenario == {0: 1_754_155 - 14_681, 1: 973, 2: 9_077, 3: 4_631}


def test_every_published_row(book: pd.DataFrame) -> None:
    digest = hashlib.sha256()
    for column, dtype in [
        ("TX_TIME_SECONDS", "<i8"),
        ("CUSTOMER_ID", "<i8"),
        ("TERMINAL_ID", "<i8"),
        ("TX_AMOUNT", "<f8"),
        ("TX_FRAUD_SCENARIO", "<i8"),
    ]:
        digest.update(np.ascontiguousarray(book[column].to_numpy().astype(dtype)).tobytes())
    assert digest.hexdigest() == PUBLISHED_DIGEST


def test_first_last_and_tied_rows(book: pd.DataFrame) -> None:
    first, last = book.iloc[0], book.iloc[-1]
    assert (str(first["TX_DATETIME"]), first["CUSTOMER_ID"], first["TERMINAL_ID"], first["TX_AMOUNT"]) == (
        "2018-04-01 00:00:31",
        596,
        3156,
        57.16,
    )
    assert (str(last["TX_DATETIME"]), last["CUSTOMER_ID"], last["TERMINAL_ID"], last["TX_AMOUNT"]) == (
        "2018-09-30 23:59:57",
        3542,
        9849,
        23.59,
    )
    # Same second, published with the higher customer id first: a stable sort would swap them.
    tied = book.loc[[255, 256, 281, 282], ["TX_TIME_SECONDS", "CUSTOMER_ID"]].to_numpy().tolist()
    assert tied == [[8897, 497], [8897, 270], [9299, 3693], [9299, 863]]


def test_one_label_and_one_event_per_transaction(book: pd.DataFrame) -> None:
    labels = label_events(book, FraudSimConfig())
    events = to_transaction_events(book)
    assert len(labels) == len(events) == len(book)
    assert int(labels["is_fraud"].sum()) == 14_681
    assert ((labels["event_time"] - labels["tx_event_time"]) == pd.Timedelta(days=7)).all()
    assert events["event_time"].is_monotonic_increasing
