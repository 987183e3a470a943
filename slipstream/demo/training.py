"""The model half of the story, as `slipstream train fraud --promote` tells it, on just the events its windows need:
offline features backfilled (Feast file sources), LightGBM trained and validated, exported to ONNX behind the parity
gate, registered in MLflow and promoted to champion — with REGISTERED and PROMOTED on this run's ``model-events``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from slipstream.app import Slipstream
from slipstream.demo.timeline import LABEL_FIELDS, REACH_US, TX_FIELDS, Timeline, day_micros, us_of
from slipstream.features.definitions import FRAUD
from slipstream.schemas.transport import EventProducer

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True, slots=True)
class Champion:
    version: str
    threshold: float
    metrics: dict[str, float]
    parity_max_abs_diff: float
    parity_rows: int
    train_rows: int
    train_frauds: int
    backfill_vectors: int


def train_champion(
    app: Slipstream, producer: EventProducer, tx: pd.DataFrame, labels: pd.DataFrame, timeline: Timeline
) -> Champion:
    """What `slipstream train fraud --promote` does, on the events the windows need: backfill the offline features
    (Feast file sources), train LightGBM, register it behind the ONNX parity gate, promote it (model-events)."""
    from slipstream.features.offline import compute_offline, write_offline
    from slipstream.models.dataset import data_hash, fraud_training_frame, window
    from slipstream.models.fraud import train_fraud
    from slipstream.models.publish import register_fraud

    for noisy in ("mlflow", "alembic"):  # "creating initial MLflow database tables" and such
        logging.getLogger(noisy).setLevel(logging.WARNING)
    lo = day_micros(timeline.train[0]) - REACH_US  # every window of the first training day is full
    hi = day_micros(timeline.valid[1])
    t, lt, ltx = us_of(tx["event_time"]), us_of(labels["event_time"]), us_of(labels["tx_event_time"])
    tx_part = tx.loc[(t >= lo) & (t < hi)].reset_index(drop=True)
    label_part = labels.loc[(ltx >= lo) & (lt < hi)].reset_index(drop=True)
    backfill = compute_offline(
        FRAUD, {"transactions": tx_part[list(TX_FIELDS)], "labels": label_part[list(LABEL_FIELDS)]}
    )
    write_offline(backfill, app.settings.offline_dir)
    frame = fraud_training_frame(tx_part, label_part)
    train_set, valid_set = window(frame, *timeline.train), window(frame, *timeline.valid)
    model = train_fraud(train_set, valid_set)
    registry, name = app.model_registry, app.settings.fraud_model
    registered, metrics = register_fraud(
        registry,
        name,
        model,
        train_set,
        valid_set,
        data_window=(timeline.train[0], timeline.valid[1]),
        data_hash=data_hash(frame),
        producer=producer,
    )
    registry.promote(name, registered.version, producer=producer)
    return Champion(
        registered.version,
        model.threshold,
        metrics,
        registered.parity.max_abs_diff,
        registered.parity.n,
        len(train_set),
        int(train_set["label"].sum()),
        len(backfill.vectors),
    )
