"""Rank agreement between two orders of the same candidates: a champion ranker's and a challenger's.

Pure functions over item ids, no model and no clock. ``reference`` is the champion's order (best first), ``other``
the challenger's order of the same items:

* :func:`overlap_at_k` — ``|top-k(reference) & top-k(other)| / k``;
* :func:`kendall_tau` — Kendall's tau-b between the two full orders (``scipy.stats.kendalltau`` on the positions;
  1.0 for fewer than two items, where there is no pair to disagree on);
* :func:`ndcg_at_k` — NDCG@k of ``other`` with ``reference`` as the ideal: the item at position ``i`` (0-based) of
  ``reference`` has graded relevance ``n - i`` (the first ``n``, the last 1), so the reference scores exactly 1 and
  any other order less.

Both orders must hold the same distinct items (:class:`~slipstream.monitoring.exceptions.ShadowError` otherwise).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from slipstream.monitoring.exceptions import ShadowError

DEFAULT_K = 10


@dataclass(frozen=True, slots=True)
class RankAgreement:
    k: int
    n_items: int
    overlap_at_k: float
    kendall_tau: float
    ndcg_at_k: float
    top_changed: bool


def _positions(reference: Sequence[int], other: Sequence[int]) -> dict[int, int]:
    position = {item: i for i, item in enumerate(reference)}
    if len(position) != len(reference):
        msg = f"the reference order repeats an item: {list(reference)}"
        raise ShadowError(msg)
    if len(other) != len(reference) or set(other) != position.keys():
        msg = f"the two orders must hold the same distinct items, got {list(reference)} and {list(other)}"
        raise ShadowError(msg)
    return position


def cutoff(n_items: int, k: int = DEFAULT_K) -> int:
    """The cut-off used for a list of ``n_items``: ``min(k, n_items)``."""
    if k < 1:
        msg = f"k must be >= 1, got {k}"
        raise ShadowError(msg)
    return min(k, n_items)


def overlap_at_k(reference: Sequence[int], other: Sequence[int], k: int = DEFAULT_K) -> float:
    """Share of the reference's top ``k`` that is also in the other's top ``k`` (1.0 for empty lists)."""
    _positions(reference, other)
    kk = cutoff(len(reference), k)
    if kk == 0:
        return 1.0
    return len(set(reference[:kk]) & set(other[:kk])) / kk


def kendall_tau(reference: Sequence[int], other: Sequence[int]) -> float:
    """Kendall's tau-b between the two orders: 1 identical, -1 reversed (1.0 for fewer than two items)."""
    position = _positions(reference, other)
    if len(reference) < 2:
        return 1.0
    ranks_in_reference = [position[item] for item in other]
    from scipy.stats import kendalltau  # scipy loads at the first ranking compared, not at start-up

    tau = float(kendalltau(range(len(other)), ranks_in_reference).statistic)
    return round(tau, 12)  # tau-b divides by a square root: 0.9999999999999999 for identical orders otherwise


def _dcg(relevances: Sequence[int]) -> float:
    return sum(rel / math.log2(i + 2) for i, rel in enumerate(relevances))


def ndcg_at_k(reference: Sequence[int], other: Sequence[int], k: int = DEFAULT_K) -> float:
    """NDCG@k of ``other``, the reference order being the ideal (relevance ``n - position``; 1.0 for empty lists)."""
    position = _positions(reference, other)
    n = len(reference)
    kk = cutoff(n, k)
    if kk == 0:
        return 1.0
    ideal = _dcg([n - i for i in range(kk)])
    return _dcg([n - position[item] for item in other[:kk]]) / ideal


def rank_agreement(reference: Sequence[int], other: Sequence[int], k: int = DEFAULT_K) -> RankAgreement:
    """All three measures, the cut-off and whether the first item changed."""
    _positions(reference, other)
    n = len(reference)
    return RankAgreement(
        k=cutoff(n, k),
        n_items=n,
        overlap_at_k=overlap_at_k(reference, other, k),
        kendall_tau=kendall_tau(reference, other),
        ndcg_at_k=ndcg_at_k(reference, other, k),
        top_changed=n > 0 and reference[0] != other[0],
    )
