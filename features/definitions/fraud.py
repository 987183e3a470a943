"""The Fraud Detection Handbook's baseline features (chapter 3), over the transactions and labels topics.

Customer: count and mean amount of the card's transactions in (t - nD, t], n in 1, 7, 30, the current one included.
Terminal: count of the terminal's transactions in (t - (n+7)D, t - 7D], and the share of them known to be fraud by
``t`` (a label counts once its label event, on the labels topic, has happened). Request: amount, weekend, night.
"""

from __future__ import annotations

from datetime import timedelta

from slipstream.features.base import (
    Agg,
    Aggregate,
    Entity,
    FeatureSet,
    FeatureView,
    Ratio,
    RequestFeature,
    SourceSpec,
    Window,
)

DAY = timedelta(days=1)
LABEL_DELAY = timedelta(days=7)
WINDOW_DAYS = (1, 7, 30)

CUSTOMER = Entity("customer", ("customer_id",), ("int64",), "A card holder.")
TERMINAL = Entity("terminal", ("terminal_id",), ("int64",), "A payment terminal.")

TRANSACTIONS = SourceSpec(
    "transactions", time_field="event_time", id_field="transaction_id", fields=("amount", "terminal_id")
)
LABELS = SourceSpec(
    "labels", time_field="tx_event_time", id_field="transaction_id", known_by="event_time", fields=("is_fraud",)
)


def _customer_features() -> tuple[Aggregate | Ratio, ...]:
    out: list[Aggregate | Ratio] = []
    for n in WINDOW_DAYS:
        window = Window(n * DAY)
        out.append(Aggregate(f"CUSTOMER_ID_NB_TX_{n}DAY_WINDOW", "transactions", Agg.COUNT, window))
        out.append(Aggregate(f"CUSTOMER_ID_AVG_AMOUNT_{n}DAY_WINDOW", "transactions", Agg.MEAN, window, "amount"))
    return tuple(out)


def _terminal_features() -> tuple[Aggregate | Ratio, ...]:
    out: list[Aggregate | Ratio] = []
    for n in WINDOW_DAYS:
        window = Window(n * DAY, delay=LABEL_DELAY)
        count = f"TERMINAL_ID_NB_TX_{n}DAY_WINDOW"
        frauds = f"TERMINAL_ID_NB_FRAUD_{n}DAY_WINDOW"
        out.append(Aggregate(count, "transactions", Agg.COUNT, window))
        out.append(Aggregate(frauds, "labels", Agg.SUM, window, "is_fraud"))
        out.append(Ratio(f"TERMINAL_ID_RISK_{n}DAY_WINDOW", frauds, count))
    return tuple(out)


CUSTOMER_VIEW = FeatureView(
    "customer_spending", CUSTOMER, (TRANSACTIONS,), _customer_features(), description="Card spending windows."
)
TERMINAL_VIEW = FeatureView(
    "terminal_risk", TERMINAL, (TRANSACTIONS, LABELS), _terminal_features(), description="Delayed terminal risk."
)

MODEL_INPUT = (
    "TX_AMOUNT",
    "TX_DURING_WEEKEND",
    "TX_DURING_NIGHT",
    *(f"CUSTOMER_ID_{kind}_{n}DAY_WINDOW" for n in WINDOW_DAYS for kind in ("NB_TX", "AVG_AMOUNT")),
    *(f"TERMINAL_ID_{kind}_{n}DAY_WINDOW" for n in WINDOW_DAYS for kind in ("NB_TX", "RISK")),
)

FRAUD = FeatureSet(
    name="fraud",
    trigger="transactions",
    request=(
        RequestFeature("TX_AMOUNT", "field", "amount"),
        RequestFeature("TX_DURING_WEEKEND", "weekend"),
        RequestFeature("TX_DURING_NIGHT", "night"),
    ),
    views=(CUSTOMER_VIEW, TERMINAL_VIEW),
    model_input=MODEL_INPUT,
)
