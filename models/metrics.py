"""The fraud metrics, pure numpy and pandas (no model library loads with them, so live watchers can import them):
:func:`roc_auc`, :func:`average_precision` (scikit-learn's definitions: ties share one rank / one threshold) and
:func:`card_precision_at_k` (the Fraud Detection Handbook's: per day, cards ranked by their highest score, precision
of the top ``k``; cards detected on an earlier day leave the later days; mean of the days)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from slipstream.models.exceptions import InvalidInputError

__all__ = ["CardPrecision", "average_precision", "card_precision_at_k", "roc_auc"]

F64 = npt.NDArray[np.float64]


def _pair(labels: npt.ArrayLike, scores: npt.ArrayLike) -> tuple[npt.NDArray[np.int64], F64]:
    y = np.asarray(labels).astype(np.int64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if len(y) != len(s):
        msg = f"labels and scores differ in length: {len(y)} != {len(s)}"
        raise InvalidInputError(msg)
    if not np.isin(y, (0, 1)).all():
        msg = f"labels must be 0 or 1, got {sorted(np.unique(y).tolist())[:10]}"
        raise InvalidInputError(msg)
    return y, s


def roc_auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Area under the ROC curve: P(score of a fraud > score of a genuine), ties counting one half."""
    y, s = _pair(labels, scores)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        msg = f"AUC needs both classes, got {n_pos} positives and {n_neg} negatives"
        raise InvalidInputError(msg)
    ranks = pd.Series(s).rank(method="average").to_numpy()
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Sum over thresholds of (recall gained) x precision, every tied score one threshold (scikit-learn's AP)."""
    y, s = _pair(labels, scores)
    n_pos = int(y.sum())
    if n_pos == 0:
        msg = f"average precision needs a positive label, got none in {len(y)} rows"
        raise InvalidInputError(msg)
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    last_of_tie = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    tp = np.cumsum(y_sorted)[last_of_tie]
    flagged = (np.arange(len(y)) + 1)[last_of_tie]
    recall_gain = np.diff(np.r_[0, tp]) / n_pos
    return float(np.sum(recall_gain * tp / flagged))


@dataclass(frozen=True)
class CardPrecision:
    mean: float
    per_day: tuple[float, ...]


def card_precision_at_k(
    days: npt.ArrayLike, customers: npt.ArrayLike, labels: npt.ArrayLike, scores: npt.ArrayLike, k: int = 100
) -> CardPrecision:
    """Card Precision@k: per day (ascending), cards ranked by max score; frauds among the top ``k`` over ``k``.

    A card's label is its max label of the day; a fraud card in a day's top ``k`` (detected) is removed from the
    later days. Ties in score keep the cards' first-appearance order.
    """
    y, s = _pair(labels, scores)
    d, c = np.asarray(days).ravel(), np.asarray(customers).ravel()
    if not len(d) == len(c) == len(y):
        msg = f"days, customers and labels differ in length: {len(d)}, {len(c)}, {len(y)}"
        raise InvalidInputError(msg)
    if k < 1:
        msg = f"k must be >= 1, got {k!r}"
        raise InvalidInputError(msg)
    frame = pd.DataFrame({"day": d, "card": c, "label": y, "score": s})
    detected: set[Any] = set()
    per_day: list[float] = []
    for _day, rows in frame.groupby("day", sort=True):
        rows = rows[~rows["card"].isin(detected)]
        cards = rows.groupby("card", sort=False).agg(score=("score", "max"), label=("label", "max"))
        top = cards.sort_values("score", ascending=False, kind="stable").head(k)
        hits = top.index[top["label"] == 1]
        detected.update(hits.tolist())
        per_day.append(len(hits) / k)
    if not per_day:
        msg = "card precision needs at least one day of rows, got none"
        raise InvalidInputError(msg)
    return CardPrecision(float(np.mean(per_day)), tuple(per_day))
