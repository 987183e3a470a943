"""The ranking metrics of models.reco on examples small enough to compute by hand."""

from __future__ import annotations

import math

import pytest

from slipstream.models.exceptions import InvalidInputError
from slipstream.models.reco import dcg_at_k, ndcg_at_k, recall_at_k

LOG3 = math.log2(3)  # discount of rank 2
SCORES = [0.9, 0.8, 0.1]
GAINS = [0, 1, 2]  # ranked as given: gains 0, 1, 2


def test_dcg_uses_exponential_gain_and_log_discount() -> None:
    # (2**2 - 1) / log2(2) + 0 + (2**1 - 1) / log2(4) = 3 + 0.5
    assert dcg_at_k([2, 0, 1], 3) == pytest.approx(3.5)
    assert dcg_at_k([2, 0, 1], 1) == pytest.approx(3.0)
    assert dcg_at_k([], 10) == 0.0


def test_ndcg_divides_by_the_ideal_order() -> None:
    # ranked 0, 1, 2: 0 + 1/log2(3) + 3/2; ideal 2, 1, 0: 3 + 1/log2(3)
    assert ndcg_at_k(SCORES, GAINS, 3) == pytest.approx((1 / LOG3 + 1.5) / (3 + 1 / LOG3))
    assert ndcg_at_k(SCORES, GAINS, 1) == 0.0
    assert ndcg_at_k([0.1, 0.8, 0.9], GAINS, 3) == pytest.approx(1.0)


def test_ndcg_ideal_counts_relevant_items_not_ranked() -> None:
    # one ranked item of gain 1 at rank 1; the user also had a gain-2 item the retrieval missed
    assert ndcg_at_k([1.0], [1], 10, ideal=[2, 1]) == pytest.approx(1 / (3 + 1 / LOG3))


def test_ties_keep_the_given_order() -> None:
    assert ndcg_at_k([0.5, 0.5], [0, 1], 10) == pytest.approx(1 / LOG3)
    assert recall_at_k([0.5, 0.5], [0, 1], 1) == 0.0


def test_recall_caps_the_denominator_at_k() -> None:
    assert recall_at_k(SCORES, GAINS, 2) == pytest.approx(1 / 2)  # one of the two relevant in the top 2
    assert recall_at_k(SCORES, GAINS, 3, n_relevant=4) == pytest.approx(2 / 3)  # min(4, 3) = 3
    assert recall_at_k(SCORES, GAINS, 2, n_relevant=5) == pytest.approx(1 / 2)  # min(5, 2) = 2
    assert recall_at_k(list(range(12, 0, -1)), [1] * 12, 10) == pytest.approx(1.0)  # 10 of 12, capped at 10


def test_metrics_refuse_bad_inputs() -> None:
    with pytest.raises(InvalidInputError, match="3 != 2"):
        ndcg_at_k(SCORES, [0, 1])
    with pytest.raises(InvalidInputError, match=r"\[-1\.0, 1\.0\]"):
        recall_at_k([0.1, 0.2], [-1, 1])
    with pytest.raises(InvalidInputError, match="got 0"):
        dcg_at_k([1], 0)
    with pytest.raises(InvalidInputError, match="relevant"):
        ndcg_at_k([0.1, 0.2], [0, 0])
    with pytest.raises(InvalidInputError, match="got 1"):
        recall_at_k(SCORES, GAINS, 3, n_relevant=1)  # fewer than the two relevant items ranked
    with pytest.raises(InvalidInputError, match="got 0"):
        recall_at_k([0.1], [0])
