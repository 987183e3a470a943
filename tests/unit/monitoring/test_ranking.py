"""Rank agreement: hand-checked small cases and properties over random permutations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from slipstream.monitoring.exceptions import ShadowError
from slipstream.monitoring.ranking import kendall_tau, ndcg_at_k, overlap_at_k, rank_agreement


def test_identical_orders_agree_fully() -> None:
    items = [7, 3, 9, 1, 4]
    got = rank_agreement(items, list(items))
    assert (got.overlap_at_k, got.kendall_tau, got.ndcg_at_k) == (1.0, 1.0, 1.0)
    assert (got.k, got.n_items, got.top_changed) == (5, 5, False)


def test_reversed_order_has_tau_minus_one() -> None:
    items = list(range(12))
    assert kendall_tau(items, items[::-1]) == pytest.approx(-1.0)
    got = rank_agreement(items, items[::-1])
    assert got.k == 10 and got.top_changed
    assert got.overlap_at_k == pytest.approx(8 / 10)  # top-10 of 12 share 8 items either way


def test_one_swap_by_hand() -> None:
    reference, other = [1, 2, 3], [1, 3, 2]
    assert overlap_at_k(reference, other) == 1.0
    assert kendall_tau(reference, other) == pytest.approx(1 / 3)  # 2 concordant pairs, 1 discordant
    ideal = 3 + 2 / math.log2(3) + 1 / 2  # relevances 3, 2, 1
    assert ndcg_at_k(reference, other) == pytest.approx((3 + 1 / math.log2(3) + 2 / 2) / ideal)
    assert ndcg_at_k(reference, other) == pytest.approx(0.972504, abs=1e-6)


def test_overlap_and_ndcg_at_a_small_cutoff() -> None:
    reference, other = [1, 2, 3, 4], [3, 1, 4, 2]
    assert overlap_at_k(reference, other, k=2) == 0.5
    ideal = 4 + 3 / math.log2(3)
    assert ndcg_at_k(reference, other, k=2) == pytest.approx((2 + 4 / math.log2(3)) / ideal)


def test_short_lists() -> None:
    assert rank_agreement([5], [5]).kendall_tau == 1.0
    empty = rank_agreement([], [])
    assert (empty.k, empty.overlap_at_k, empty.kendall_tau, empty.ndcg_at_k, empty.top_changed) == (
        0,
        1.0,
        1.0,
        1.0,
        False,
    )


def test_properties_on_random_permutations() -> None:
    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(2, 30))
        reference = [int(x) for x in rng.permutation(1000)[:n]]
        other = [int(x) for x in rng.permutation(reference)]
        got = rank_agreement(reference, other)
        assert 0.0 <= got.overlap_at_k <= 1.0
        assert -1.0 <= got.kendall_tau <= 1.0
        assert 0.0 < got.ndcg_at_k <= 1.0 + 1e-12
        assert kendall_tau(other, reference) == pytest.approx(got.kendall_tau)  # symmetric
        if n <= 10:
            assert got.overlap_at_k == 1.0  # k = n: the same items


def test_different_item_sets_are_refused() -> None:
    with pytest.raises(ShadowError, match="same distinct items"):
        rank_agreement([1, 2, 3], [1, 2, 4])
    with pytest.raises(ShadowError, match="repeats"):
        rank_agreement([1, 1], [1, 1])
