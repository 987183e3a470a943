"""A small simulated fraud stream and the sequential replay of the pure core that every engine must equal."""

from __future__ import annotations

from typing import Any

import pandas as pd

from slipstream.features.definitions.fraud import CUSTOMER_VIEW, FRAUD, TERMINAL_VIEW
from slipstream.features.windows import EntityState, compute_view, request_features, to_micros
from slipstream.streams.simulate.fraud import FraudSimConfig, label_events, simulate_transactions, to_transaction_events


def _micros_record(row: dict[str, Any]) -> dict[str, Any]:
    return {k: to_micros(v.to_pydatetime()) if isinstance(v, pd.Timestamp) else v for k, v in row.items()}


def small_fraud_streams(
    n_customers: int = 60, n_terminals: int = 120, days: int = 45
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Transactions in time order and labels in label-time order, times as epoch microseconds."""
    config = FraudSimConfig(n_customers=n_customers, n_terminals=n_terminals, nb_days=days)
    frame = simulate_transactions(config)
    tx = to_transaction_events(frame)
    labels = label_events(frame, config)
    tx_records = [_micros_record(r) for r in tx.to_dict("records")]
    label_records = [_micros_record(r) for r in labels.sort_values("event_time", kind="stable").to_dict("records")]
    return tx_records, label_records


def reference(tx: list[dict[str, Any]], labels: list[dict[str, Any]]) -> dict[int, dict[str, float]]:
    events = [(r["event_time"], 0, r["transaction_id"], "labels", r) for r in labels]
    events += [(r["event_time"], 1, r["transaction_id"], "transactions", r) for r in tx]
    events.sort(key=lambda e: e[:3])
    customers: dict[int, EntityState] = {}
    terminals: dict[int, EntityState] = {}
    out: dict[int, dict[str, float]] = {}
    for t, _, tid, topic, r in events:
        terminal = terminals.setdefault(r["terminal_id"], EntityState())
        terminal.apply(TERMINAL_VIEW.source(topic), r, TERMINAL_VIEW.reach_us, 0)
        if topic == "transactions":
            customer = customers.setdefault(r["customer_id"], EntityState())
            customer.apply(CUSTOMER_VIEW.source(topic), r, CUSTOMER_VIEW.reach_us, 0)
            values = request_features(FRAUD.request, r)
            values |= compute_view(CUSTOMER_VIEW, customer, t, topic, tid)
            values |= compute_view(TERMINAL_VIEW, terminal, t, topic, tid)
            out[tid] = values
    return out
