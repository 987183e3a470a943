"""The offline engine on the Fraud Handbook's simulated data: the first 30 days equal a windows.py replay exactly.

Transactions of 2018-04-01..04-30 and the labels known by then (each 7 days after its transaction), so the terminal
windows see real label traffic. Every feature of the vectors (TX_AMOUNT, the 14 baseline features, the
intermediate fraud counts) and every view row (transactions and labels) must agree with the replay to 1e-9.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pytest

from slipstream.features.definitions.fraud import FRAUD, WINDOW_DAYS
from slipstream.features.offline import OfflineFeatures, compute_offline
from slipstream.streams.simulate import FraudSimConfig, label_events, simulate_transactions, to_transaction_events
from tests.unit.features.test_offline import assert_matches_replay

pytestmark = pytest.mark.data

DAYS = 30


@dataclass(frozen=True)
class Month:
    events: dict[str, pd.DataFrame]
    result: OfflineFeatures


@pytest.fixture(scope="module")
def month() -> Month:
    config = FraudSimConfig()
    book = simulate_transactions(config)
    transactions, labels = to_transaction_events(book), label_events(book, config)
    end = pd.Timestamp(config.start_date, tz="UTC") + pd.Timedelta(days=DAYS)
    events = {
        "transactions": transactions[transactions["event_time"] < end].reset_index(drop=True),
        "labels": labels[labels["event_time"] < end].reset_index(drop=True),
    }
    return Month(events, compute_offline(FRAUD, events))


def test_offline_equals_the_sequential_replay(month: Month) -> None:
    result = assert_matches_replay(FRAUD, month.events)
    pd.testing.assert_frame_equal(result.vectors, month.result.vectors)


def test_handbook_spot_checks(month: Month) -> None:
    vectors = month.result.vectors
    assert len(vectors) == len(month.events["transactions"])
    assert set(FRAUD.model_input) <= set(vectors.columns)
    assert vectors["event_time"].is_monotonic_increasing
    for n in WINDOW_DAYS:
        assert (vectors[f"CUSTOMER_ID_NB_TX_{n}DAY_WINDOW"] >= 1).all()
        assert vectors[f"TERMINAL_ID_RISK_{n}DAY_WINDOW"].between(0, 1).all()
    # labels arrive a week after their transaction: nothing is known in the first week, fraud is seen after it
    first_week = vectors["event_time"] < pd.Timestamp("2018-04-08", tz="UTC")
    assert (vectors.loc[first_week, "TERMINAL_ID_NB_TX_30DAY_WINDOW"] == 0).all()
    assert vectors.loc[~first_week, "TERMINAL_ID_RISK_30DAY_WINDOW"].max() > 0


def test_view_rows_hold_both_topics(month: Month) -> None:
    rows = month.result.view_rows
    assert len(rows["customer_spending"]) == len(month.events["transactions"])
    assert len(rows["terminal_risk"]) == len(month.events["transactions"]) + len(month.events["labels"])
