"""Data simulators. ``fraud``: the Fraud Detection Handbook's card transactions, reproduced exactly."""

from slipstream.streams.simulate.fraud import (
    TX_COLUMNS,
    FraudSimConfig,
    label_events,
    simulate_transactions,
    to_transaction_events,
)
from slipstream.streams.simulate.reco import (
    INTERACTION_ACTIONS,
    INTERACTION_COLUMNS,
    RecoSimConfig,
    RecoSimulation,
    simulate_interactions,
)

__all__ = [
    "INTERACTION_ACTIONS",
    "INTERACTION_COLUMNS",
    "RecoSimConfig",
    "RecoSimulation",
    "simulate_interactions",
    "TX_COLUMNS",
    "FraudSimConfig",
    "label_events",
    "simulate_transactions",
    "to_transaction_events",
]
