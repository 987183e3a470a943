"""`--bad-promotion`: a model trained on shuffled labels, registered behind the same gates and promoted by hand with
the stream time of its promotion — what a careless release looks like to the loop, which must roll it back."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from slipstream.app import Slipstream
from slipstream.demo.timeline import us_of
from slipstream.drill.data import DrillData
from slipstream.schemas.transport import EventProducer

ACTOR = "drill --bad-promotion"


def promote_bad_model(app: Slipstream, data: DrillData, producer: EventProducer, at_us: int) -> str:
    """Train on the champion's own windows with the labels shuffled (30 rounds), register, promote; its version."""
    from slipstream.models.dataset import data_hash, fraud_training_frame, window
    from slipstream.models.fraud import train_fraud
    from slipstream.models.publish import register_fraud

    t = data.timeline
    tx, labels = data.tx, data.labels
    lo, hi = t.warm_start_us, t.live_start_us
    times = us_of(tx["event_time"])
    tx_part = tx.loc[(times >= lo) & (times < hi)].reset_index(drop=True)
    label_times = us_of(labels["tx_event_time"])
    label_part = labels.loc[(label_times >= lo) & (label_times < hi)].reset_index(drop=True)
    frame = fraud_training_frame(tx_part, label_part)
    train_set, valid_set = window(frame, *t.train), window(frame, *t.valid)
    shuffled = train_set.assign(label=np.random.default_rng(7).permutation(train_set["label"].to_numpy()))
    model = train_fraud(shuffled, None, params={"n_estimators": 30})
    registry, name = app.model_registry, app.settings.fraud_model
    registered, _ = register_fraud(
        registry,
        name,
        model,
        shuffled,
        valid_set,
        data_window=t.train,
        data_hash=data_hash(shuffled),
        producer=producer,
    )
    registry.actor = ACTOR
    note = {
        "reason": "drill --bad-promotion: a model trained on shuffled labels, promoted by hand",
        "stream_time": datetime.fromtimestamp(at_us / 1e6, tz=UTC),  # a promotion in the stream: watched
    }
    registry.promote(name, registered.version, producer=producer, note=note)
    registry.actor = "slipstream"
    return registered.version
