"""Behavioural checks of the fraud model a fraud analyst would expect, and training determinism.

A small slice keeps them fast: two training weeks (2018-07-11..07-24), validation on 2018-08-01..07.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from slipstream.features.definitions.fraud import FRAUD
from slipstream.models.dataset import data_hash, window
from slipstream.models.evaluation import average_precision, roc_auc
from slipstream.models.exceptions import InvalidInputError
from slipstream.models.fraud import FraudModel, predict, train_fraud, tune_fraud

pytestmark = pytest.mark.model

PARAMS = {"num_leaves": 15, "learning_rate": 0.1, "min_data_in_leaf": 20, "n_estimators": 120}


@dataclass(frozen=True)
class Trained:
    train: pd.DataFrame
    valid: pd.DataFrame
    model: FraudModel


@pytest.fixture(scope="module")
def trained(training_frame: pd.DataFrame) -> Trained:
    train = window(training_frame, "2018-07-11", "2018-07-25")
    valid = window(training_frame, "2018-08-01", "2018-08-08")
    return Trained(train, valid, train_fraud(train, valid, params=PARAMS, seed=7))


def test_training_is_deterministic(trained: Trained) -> None:
    again = train_fraud(trained.train.copy(), trained.valid.copy(), params=PARAMS, seed=7)
    assert again.best_iteration == trained.model.best_iteration
    assert again.threshold == trained.model.threshold
    assert np.array_equal(predict(again, trained.valid), predict(trained.model, trained.valid))
    assert data_hash(trained.train) == data_hash(trained.train.copy())


def test_model_describes_itself(trained: Trained) -> None:
    model = trained.model
    assert model.feature_names == tuple(FRAUD.model_input)
    assert 0 < model.best_iteration <= PARAMS["n_estimators"]
    assert 0.0 < model.threshold < 1.0
    assert model.params["deterministic"] is True and model.params["seed"] == 7


def test_model_ranks_frauds_well_on_the_next_week(trained: Trained) -> None:
    scores = predict(trained.model, trained.valid)
    y = trained.valid["label"].to_numpy()
    assert roc_auc(y, scores) > 0.8
    assert average_precision(y, scores) > 0.5


def test_a_risky_terminal_raises_the_score(trained: Trained) -> None:
    sample = trained.valid[trained.valid["TX_AMOUNT"] < 200].sample(n=2_000, random_state=0)
    for n in (1, 7, 30):
        safe, risky = sample.copy(), sample.copy()
        safe[f"TERMINAL_ID_RISK_{n}DAY_WINDOW"] = 0.0
        risky[f"TERMINAL_ID_RISK_{n}DAY_WINDOW"] = 1.0
        gain = predict(trained.model, risky) - predict(trained.model, safe)
        assert gain.mean() > 0, n
    everything_risky = sample.copy()
    for n in (1, 7, 30):
        everything_risky[f"TERMINAL_ID_RISK_{n}DAY_WINDOW"] = 1.0
    gain = predict(trained.model, everything_risky) - predict(trained.model, sample)
    assert gain.mean() > 0
    assert (gain > 0).mean() > 0.5


def test_an_amount_over_220_is_flagged(trained: Trained) -> None:
    """Scenario 1 is deterministic: the week's real transactions over 220 score high."""
    over = trained.valid[trained.valid["TX_AMOUNT"] > 220]
    assert len(over) > 50
    scores = predict(trained.model, over)
    assert (scores >= trained.model.threshold).mean() >= 0.95
    assert float(np.median(scores)) > 0.99


def test_raising_an_amount_over_220_raises_the_score(trained: Trained) -> None:
    """The customer averages include the transaction itself, so they move with its amount."""
    sample = trained.valid[trained.valid["TX_AMOUNT"] < 100].sample(n=2_000, random_state=1)
    big = sample.copy()
    big["TX_AMOUNT"] = 250.0
    for n in (1, 7, 30):
        count = sample[f"CUSTOMER_ID_NB_TX_{n}DAY_WINDOW"]
        extra = (250.0 - sample["TX_AMOUNT"]) / count
        big[f"CUSTOMER_ID_AVG_AMOUNT_{n}DAY_WINDOW"] = sample[f"CUSTOMER_ID_AVG_AMOUNT_{n}DAY_WINDOW"] + extra
    before, after = predict(trained.model, sample), predict(trained.model, big)
    assert (after >= before).mean() > 0.95
    assert float(np.median(after)) > 0.9


def test_tuning_picks_the_best_validation_ap(trained: Trained) -> None:
    grid = {"num_leaves": (7, 15), "learning_rate": (0.1,), "min_data_in_leaf": (100,), "n_estimators": (60,)}
    params, table = tune_fraud(trained.train, trained.valid, grid, seed=7)
    assert len(table) == 2
    assert table["average_precision"].is_monotonic_decreasing
    assert params["num_leaves"] == table.loc[0, "num_leaves"]
    assert params["n_estimators"] == table.loc[0, "best_iteration"]
    assert isinstance(params["num_leaves"], int)


def test_training_refuses_a_single_class(trained: Trained) -> None:
    genuine = trained.train[trained.train["label"] == 0]
    with pytest.raises(InvalidInputError, match="single class"):
        train_fraud(genuine, params=PARAMS)
