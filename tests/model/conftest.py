"""The Fraud Handbook's data for the model tests: the stored simulation when present, else simulated (~10 s).

Features are computed once per session (~12 s for the whole log).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from slipstream.models.dataset import fraud_training_frame
from slipstream.streams.simulate import FraudSimConfig, label_events, simulate_transactions, to_transaction_events

DATA = Path(__file__).resolve().parents[2] / ".slipstream" / "data"


@dataclass(frozen=True)
class FraudData:
    transactions: pd.DataFrame
    labels: pd.DataFrame


@pytest.fixture(scope="session")
def fraud_data() -> FraudData:
    tx_path, labels_path = DATA / "fraud.parquet", DATA / "fraud.labels.parquet"
    if tx_path.exists() and labels_path.exists():
        return FraudData(pd.read_parquet(tx_path), pd.read_parquet(labels_path))
    config = FraudSimConfig()
    book = simulate_transactions(config)
    transactions = to_transaction_events(book)
    transactions["tx_fraud"] = book["TX_FRAUD"].to_numpy()
    return FraudData(transactions, label_events(book, config))


@pytest.fixture(scope="session")
def training_frame(fraud_data: FraudData) -> pd.DataFrame:
    return fraud_training_frame(fraud_data.transactions, fraud_data.labels, with_label_time=True)
