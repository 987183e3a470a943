"""Data simulators. ``fraud``: the Fraud Detection Handbook's card transactions, reproduced exactly, with optional
drift scenarios (``scenarios``); ``reco``: a clickstream."""

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
from slipstream.streams.simulate.scenarios import SCENARIOS, DriftScenario

__all__ = [
    "INTERACTION_ACTIONS",
    "INTERACTION_COLUMNS",
    "RecoSimConfig",
    "RecoSimulation",
    "simulate_interactions",
    "TX_COLUMNS",
    "SCENARIOS",
    "DriftScenario",
    "FraudSimConfig",
    "label_events",
    "simulate_transactions",
    "to_transaction_events",
]
