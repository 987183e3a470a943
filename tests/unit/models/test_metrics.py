"""The evaluation metrics and the threshold rule on examples small enough to compute by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from slipstream.models.evaluation import Fold, average_precision, card_precision_at_k, fold_test_set, roc_auc
from slipstream.models.exceptions import InvalidInputError
from slipstream.models.fraud import best_f1_threshold

LABELS = [0, 0, 1, 1]
SCORES = [0.1, 0.4, 0.35, 0.8]


def test_auc_counts_correctly_ordered_pairs() -> None:
    # pairs (fraud, genuine): (.35,.1) ok, (.35,.4) wrong, (.8,.1) ok, (.8,.4) ok -> 3/4
    assert roc_auc(LABELS, SCORES) == pytest.approx(0.75)
    assert roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)  # a tie counts one half
    assert roc_auc([1, 0, 1], [0.9, 0.1, 0.8]) == pytest.approx(1.0)


def test_average_precision_sums_precision_at_each_recall_step() -> None:
    # ranked: .8 (fraud) P=1 R=.5; .4; .35 (fraud) P=2/3 R=1 -> .5*1 + .5*2/3
    assert average_precision(LABELS, SCORES) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert average_precision([1, 0], [0.5, 0.5]) == pytest.approx(0.5)  # tied scores: one threshold
    assert average_precision([0, 1, 0, 0], [0.9, 0.1, 0.5, 0.2]) == pytest.approx(0.25)


def test_metrics_refuse_bad_inputs() -> None:
    with pytest.raises(InvalidInputError, match="both classes"):
        roc_auc([1, 1], [0.2, 0.3])
    with pytest.raises(InvalidInputError, match="no"):
        average_precision([0, 0], [0.2, 0.3])
    with pytest.raises(InvalidInputError, match="3 != 2"):
        roc_auc([0, 1, 1], [0.2, 0.3])
    with pytest.raises(InvalidInputError, match=r"\[0, 2\]"):
        roc_auc([0, 2], [0.2, 0.3])


def test_card_precision_groups_cards_and_removes_detected_ones() -> None:
    days = [1, 1, 1, 1, 2, 2, 2, 2]
    cards = ["A", "B", "C", "A", "A", "B", "C", "D"]
    labels = [0, 0, 1, 1, 1, 0, 1, 0]
    scores = [0.9, 0.8, 0.1, 0.2, 0.95, 0.5, 0.7, 0.2]
    result = card_precision_at_k(days, cards, labels, scores, k=2)
    # day 1: A (max .9, fraud), B (.8) in the top 2 -> 1/2, A detected; day 2 without A: C (.7, fraud), B -> 1/2
    assert result.per_day == (0.5, 0.5)
    assert result.mean == pytest.approx(0.5)
    # without A's removal day 2 would be the same ranking with A first: check removal matters with k=1
    assert card_precision_at_k(days, cards, labels, scores, k=1).per_day == (1.0, 1.0)


def test_best_f1_threshold() -> None:
    # thresholds .8: F1 2/3; .4: 1/2; .35: 4/5; .1: 2/3
    assert best_f1_threshold(LABELS, SCORES) == pytest.approx(0.35)
    assert best_f1_threshold([0, 0], [0.1, 0.2]) == 0.5  # no fraud: the default


def test_fold_dates_follow_the_handbook() -> None:
    fold = Fold.testing("2018-08-08")
    assert fold.train_start == pd.Timestamp("2018-07-25", tz="UTC")
    assert fold.train_end == pd.Timestamp("2018-08-01", tz="UTC")
    assert fold.test_end == pd.Timestamp("2018-08-15", tz="UTC")
    assert fold.earlier(14).test_start == pd.Timestamp("2018-07-25", tz="UTC")


def at(day: str) -> pd.Timestamp:
    return pd.Timestamp(day, tz="UTC") + pd.Timedelta(hours=12)


def test_test_set_drops_known_compromised_cards_day_by_day() -> None:
    rows = [
        (1, at("2018-07-26"), 1),  # fraud in the training week: card 1 gone from the whole test week
        (2, at("2018-08-03"), 1),  # fraud on 08-03 (delay week): known from 08-11 (08-03 = 08-11 - 8)
        (3, at("2018-07-20"), 1),  # fraud before the training week: not counted as known
        *[(c, at(f"2018-08-{d:02d}"), 0) for c in (1, 2, 3) for d in range(8, 15)],
    ]
    frame = pd.DataFrame(rows, columns=["customer_id", "event_time", "label"])
    test = fold_test_set(frame, Fold.testing("2018-08-08"))
    kept = test.groupby("customer_id")["event_time"].agg(["count", "max"])
    assert 1 not in kept.index
    assert kept.loc[2, "count"] == 3 and kept.loc[2, "max"] == at("2018-08-10")
    assert kept.loc[3, "count"] == 7
    frame["label_time"] = frame["event_time"] + pd.Timedelta(days=2)
    realistic = fold_test_set(frame, Fold.testing("2018-08-08"), "realistic")
    assert set(realistic["customer_id"]) == {3}  # card 2's fraud label arrived on 08-05, before the test week
    assert np.array_equal(realistic["label"].to_numpy(), np.zeros(7))
