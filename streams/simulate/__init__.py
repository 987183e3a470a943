"""Data simulators. ``fraud``: the Fraud Detection Handbook's card transactions, reproduced exactly."""

from streams.simulate.fraud import (
    TX_COLUMNS,
    FraudSimConfig,
    label_events,
    simulate_transactions,
    to_transaction_events,
)

__all__ = [
    "TX_COLUMNS",
    "FraudSimConfig",
    "label_events",
    "simulate_transactions",
    "to_transaction_events",
]
