"""Dataset helpers: hashing, windows, re-timed labels, and the model's refusal of incomplete frames."""

from __future__ import annotations

from datetime import datetime
from typing import cast

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from slipstream.models.dataset import data_hash, fraud_training_frame, known_labels, realistic_labels, window
from slipstream.models.exceptions import InvalidInputError, MissingFeaturesError, UnknownOptionError
from slipstream.models.fraud import FraudModel, grid_points, predict


def _labels(n: int = 2_000) -> pd.DataFrame:
    times = pd.Timestamp("2018-04-01", tz="UTC") + pd.to_timedelta(np.arange(n), unit="h")
    return pd.DataFrame(
        {
            "transaction_id": np.arange(n, dtype=np.int64),
            "customer_id": np.arange(n, dtype=np.int64) % 7,
            "terminal_id": np.arange(n, dtype=np.int64) % 11,
            "tx_event_time": times,
            "event_time": times + pd.Timedelta(days=7),
            "is_fraud": np.arange(n) % 4 == 0,
        }
    )


def test_data_hash_is_stable_and_sensitive() -> None:
    frame = pd.DataFrame({"a": [1, 2, 3], "b": [0.5, 1.5, 2.5]})
    assert data_hash(frame) == data_hash(frame.copy())
    assert len(data_hash(frame)) == 64
    changed = frame.copy()
    changed.loc[1, "b"] = 1.5000001
    assert data_hash(changed) != data_hash(frame)
    assert data_hash(frame.rename(columns={"b": "c"})) != data_hash(frame)


def test_window_is_half_open_and_refuses_naive_datetimes() -> None:
    frame = pd.DataFrame(
        {"event_time": pd.to_datetime(["2018-07-24 23:59", "2018-07-25 00:00", "2018-08-01 00:00"], utc=True)}
    )
    assert len(window(frame, "2018-07-25", "2018-08-01")) == 1
    with pytest.raises(InvalidInputError, match="naive datetime"):
        window(frame, datetime(2018, 7, 25), "2018-08-01")  # noqa: DTZ001
    with pytest.raises(InvalidInputError, match="before its start"):
        window(frame, "2018-08-01", "2018-07-25")


def test_realistic_labels_are_deterministic_and_delayed_as_designed() -> None:
    labels = _labels()
    first = realistic_labels(labels)
    shuffled = realistic_labels(labels.sample(frac=1.0, random_state=3))
    pd.testing.assert_frame_equal(first, shuffled)
    delay_days = (first["event_time"] - first["tx_event_time"]).dt.total_seconds() / 86_400
    fraud = first["is_fraud"].to_numpy()
    assert np.allclose(delay_days[~fraud], 30.0)
    assert 1.5 < float(np.median(delay_days[fraud])) < 2.5
    assert (delay_days[fraud] > 0).all()


def test_known_labels_hide_labels_not_arrived() -> None:
    frame = pd.DataFrame(
        {"label": [1, 1, 0], "label_time": pd.to_datetime(["2018-08-01", "2018-08-09", "2018-08-02"], utc=True)}
    )
    assert known_labels(frame, "2018-08-08").tolist() == [1, 0, 0]


def test_training_frame_refuses_bad_inputs() -> None:
    labels = _labels(10)
    with pytest.raises(InvalidInputError, match="tx_fraud"):
        fraud_training_frame(pd.DataFrame({"transaction_id": [1]}), labels)
    tx = pd.DataFrame(
        {
            "transaction_id": labels["transaction_id"],
            "event_time": labels["tx_event_time"],
            "customer_id": labels["customer_id"],
            "terminal_id": labels["terminal_id"],
            "amount": 10.0,
            "tx_fraud": labels["is_fraud"].astype(int),
        }
    )
    with pytest.raises(UnknownOptionError, match="'weekly'"):
        fraud_training_frame(tx, labels, label_delay="weekly")
    frame = fraud_training_frame(tx, labels, with_label_time=True)
    assert list(frame.columns[:4]) == ["transaction_id", "customer_id", "event_time", "label"]
    assert frame.columns[-1] == "label_time"


def test_predict_names_missing_features() -> None:
    never_called = cast(lgb.Booster, object())  # the frame is refused before the booster is touched
    model = FraudModel(booster=never_called, feature_names=("TX_AMOUNT", "TX_DURING_NIGHT"), threshold=0.5)
    with pytest.raises(MissingFeaturesError, match="TX_DURING_NIGHT"):
        predict(model, pd.DataFrame({"TX_AMOUNT": [1.0]}))


def test_grid_points_in_fixed_order() -> None:
    assert grid_points({"b": (1, 2), "a": (3,)}) == [{"a": 3, "b": 1}, {"a": 3, "b": 2}]
    with pytest.raises(InvalidInputError, match="'a'"):
        grid_points({"a": ()})
