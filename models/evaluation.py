"""The Fraud Detection Handbook's evaluation protocol and metrics, on Slipstream's training frames.

Metrics (pure numpy, no model inside) live in :mod:`slipstream.models.metrics`, which loads no model library:
:func:`roc_auc`, :func:`average_precision` and :func:`card_precision_at_k`, re-exported here.

Protocol (:func:`evaluate_fraud`): a :class:`Fold` trains on 7 days, skips 7 (the labels' delay) and tests on the
next 7, from which known-compromised cards are removed (a fraud in the training week, or, on test day ``i``, up to
day ``i - 8``). Hyper-parameters are chosen on the fold 14 days earlier, whose test week is this fold's training
week, never on the test week. ``single_week`` is the book's chapter-3 fold (test 2018-08-08..14); ``rolling`` the
four weekly folds of its model-selection chapter (test weeks from 08-08, 08-15, 08-22, 08-29), mean and std.

With ``label_delay="realistic"`` the same folds are run on re-timed labels (:mod:`slipstream.models.dataset`): the
model is
trained at the test week's start with the labels arrived by then (the rest taken as genuine), and a card counts as
known compromised once a fraud label on it has arrived.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from slipstream.models.dataset import LABEL_TIME, fraud_training_frame, known_labels, require_columns, utc_time
from slipstream.models.exceptions import UnknownOptionError
from slipstream.models.fraud import DEFAULT_GRID, predict, train_fraud, tune_fraud
from slipstream.models.metrics import CardPrecision, average_precision, card_precision_at_k, roc_auc

F64 = npt.NDArray[np.float64]
DAY: Final = pd.Timedelta(days=1)
PROTOCOLS: Final = ("handbook",)
SINGLE_WEEK_TEST: Final = "2018-08-08"
ROLLING_TESTS: Final = ("2018-08-08", "2018-08-15", "2018-08-22", "2018-08-29")
EXPECTED_TEST_SET: Final = {"n_transactions": 58_264, "n_frauds": 385}
METRICS: Final = ("auc_roc", "average_precision", "card_precision_at_100")

PUBLISHED: Final[Mapping[str, Any]] = {
    "source": "Le Borgne et al., Reproducible ML for Credit Card Fraud Detection - Practical Handbook",
    "single_week": {
        "test_week": "2018-08-08..2018-08-14",
        "models": {
            "logistic regression": {"auc_roc": 0.871, "average_precision": 0.606, "card_precision_at_100": 0.291},
            "decision tree, depth 2": {"auc_roc": 0.763, "average_precision": 0.496, "card_precision_at_100": 0.241},
            "decision tree, unlimited": {"auc_roc": 0.788, "average_precision": 0.309, "card_precision_at_100": 0.243},
            "random forest": {"auc_roc": 0.867, "average_precision": 0.658, "card_precision_at_100": 0.287},
            "XGBoost": {"auc_roc": 0.862, "average_precision": 0.639, "card_precision_at_100": 0.273},
            "random scores": {"auc_roc": 0.500, "average_precision": 0.007, "card_precision_at_100": 0.017},
        },
        "best": {"auc_roc": 0.871, "average_precision": 0.658, "card_precision_at_100": 0.291},
    },
    "rolling": {
        "test_weeks": "2018-08-08..2018-09-04 (4 weekly folds)",
        "best": {
            "auc_roc": [0.869, 0.872],
            "average_precision": [0.687, 0.694],
            "card_precision_at_100": [0.303, 0.304],
        },
        "model": "tuned XGBoost",
    },
    "test_set": dict(EXPECTED_TEST_SET),
}


def fraud_metrics(test: pd.DataFrame, scores: npt.ArrayLike, k: int = 100) -> dict[str, Any]:
    """AUC ROC, AP and CP@k of ``scores`` on a test frame (``label``, ``customer_id``, ``event_time``)."""
    require_columns(test, ("label", "customer_id", "event_time"), "test")
    y = test["label"].to_numpy()
    days = test["event_time"].dt.floor("D").to_numpy()
    cp = card_precision_at_k(days, test["customer_id"].to_numpy(), y, scores, k)
    return {
        "auc_roc": roc_auc(y, scores),
        "average_precision": average_precision(y, scores),
        f"card_precision_at_{k}": cp.mean,
        f"card_precision_at_{k}_per_day": list(cp.per_day),
    }


# -------------------------------------------------------------------------------------------------- protocol


@dataclass(frozen=True)
class Fold:
    """Train on ``[train_start, train_start + train_days)``, skip ``delay_days``, test on the next ``test_days``."""

    test_start: pd.Timestamp
    train_days: int = 7
    delay_days: int = 7
    test_days: int = 7

    @classmethod
    def testing(cls, test_start: str | pd.Timestamp) -> Fold:
        return cls(utc_time(test_start))

    @property
    def train_start(self) -> pd.Timestamp:
        return self.test_start - (self.train_days + self.delay_days) * DAY

    @property
    def train_end(self) -> pd.Timestamp:
        return self.train_start + self.train_days * DAY

    @property
    def test_end(self) -> pd.Timestamp:
        return self.test_start + self.test_days * DAY

    def earlier(self, days: int) -> Fold:
        return Fold(self.test_start - days * DAY, self.train_days, self.delay_days, self.test_days)


def _label_delay_option(label_delay: str) -> None:
    if label_delay not in ("handbook", "realistic"):
        msg = f"label_delay must be 'handbook' or 'realistic', got {label_delay!r}"
        raise UnknownOptionError(msg)


def fold_train_set(frame: pd.DataFrame, fold: Fold, label_delay: str = "handbook") -> pd.DataFrame:
    """The fold's training week; with realistic delays, labels not arrived by the test start are 0 (genuine)."""
    _label_delay_option(label_delay)
    times = frame["event_time"]
    train = frame.loc[(times >= fold.train_start) & (times < fold.train_end)].reset_index(drop=True)
    if label_delay == "realistic":
        train["label"] = known_labels(train, fold.test_start)
    return train


def fold_test_set(frame: pd.DataFrame, fold: Fold, label_delay: str = "handbook") -> pd.DataFrame:
    """The fold's test week without the known-compromised cards of each test day.

    ``handbook``: cards with a fraud from the training start up to day ``i - delay_days - 1`` (their label known
    after exactly ``delay_days``). ``realistic``: cards with a fraud since the training start whose label event
    arrived before day ``i`` starts.
    """
    _label_delay_option(label_delay)
    require_columns(frame, ("customer_id", "event_time", "label"), "frame")
    times = frame["event_time"]
    since_train = frame.loc[(times >= fold.train_start) & (frame["label"] == 1)]
    if label_delay == "realistic":
        require_columns(frame, (LABEL_TIME,), "frame")
    parts = []
    for i in range(fold.test_days):
        day = fold.test_start + i * DAY
        if label_delay == "handbook":
            known = since_train.loc[since_train["event_time"] < day - fold.delay_days * DAY, "customer_id"]
        else:
            known = since_train.loc[since_train[LABEL_TIME] < day, "customer_id"]
        rows = frame.loc[(times >= day) & (times < day + DAY)]
        parts.append(rows.loc[~rows["customer_id"].isin(known.unique())])
    return pd.concat(parts).reset_index(drop=True)


def _run_fold(
    frame: pd.DataFrame,
    fold: Fold,
    label_delay: str,
    grid: Mapping[str, Sequence[Any]],
    seed: int,
    say: Callable[[str], None],
) -> dict[str, Any]:
    tuning = fold.earlier(fold.train_days + fold.delay_days)  # its test week is this fold's training week
    params, table = tune_fraud(
        fold_train_set(frame, tuning, label_delay), fold_test_set(frame, tuning, label_delay), grid, seed=seed
    )
    train = fold_train_set(frame, fold, label_delay)
    test = fold_test_set(frame, fold, label_delay)
    model = train_fraud(train, params=params, seed=seed)
    metrics = fraud_metrics(test, predict(model, test))
    say(
        f"fold test {fold.test_start.date()}: params {params} (valid AP {table['average_precision'].iloc[0]:.4f}); "
        f"AUC {metrics['auc_roc']:.4f} AP {metrics['average_precision']:.4f} "
        f"CP@100 {metrics['card_precision_at_100']:.4f}"
    )
    return {
        "test_start": str(fold.test_start.date()),
        "train": [str(fold.train_start.date()), str((fold.train_end - DAY).date())],
        "params": params,
        "validation_average_precision": float(table["average_precision"].iloc[0]),
        "test_set": {"n_transactions": len(test), "n_frauds": int(test["label"].sum())},
        **metrics,
    }


def evaluate_fraud(
    transactions: pd.DataFrame,
    labels: pd.DataFrame,
    *,
    protocol: str = "handbook",
    label_delay: str = "handbook",
    progress: Callable[[str], None] | None = None,
    grid: Mapping[str, Sequence[Any]] | None = None,
    seed: int = 42,
) -> dict[str, Any]:
    """The Handbook protocol on ``transactions`` (contract columns + ``tx_fraud``) and their label events.

    Returns ``single_week`` (the three metrics of the 2018-08-08 fold), ``rolling`` (per metric ``mean`` and
    ``std`` (sample, ddof=1) over the four folds, and ``folds``), ``published`` and ``test_set`` (size of the
    single-week test set, and the published one in ``expected``).
    """
    if protocol not in PROTOCOLS:
        msg = f"protocol must be one of {PROTOCOLS}, got {protocol!r}"
        raise UnknownOptionError(msg)
    _label_delay_option(label_delay)
    say = progress or (lambda _message: None)
    started = time.perf_counter()
    frame = fraud_training_frame(transactions, labels, label_delay=label_delay, with_label_time=True)
    say(f"features: {len(frame):,} rows in {time.perf_counter() - started:.1f} s")
    folds = [_run_fold(frame, Fold.testing(s), label_delay, grid or DEFAULT_GRID, seed, say) for s in ROLLING_TESTS]
    single = folds[ROLLING_TESTS.index(SINGLE_WEEK_TEST)]
    rolling: dict[str, Any] = {"folds": folds}
    for name in METRICS:
        values = np.array([f[name] for f in folds], dtype=np.float64)
        rolling[name] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)), "values": values.tolist()}
    return {
        "protocol": protocol,
        "label_delay": label_delay,
        "single_week": {name: single[name] for name in METRICS} | {"params": single["params"]},
        "rolling": rolling,
        "published": PUBLISHED,
        "test_set": {**single["test_set"], "expected": dict(EXPECTED_TEST_SET)},
        "seconds": round(time.perf_counter() - started, 1),
    }


__all__ = [
    "PUBLISHED",
    "CardPrecision",
    "Fold",
    "average_precision",
    "card_precision_at_k",
    "evaluate_fraud",
    "fraud_metrics",
    "roc_auc",
    "fold_test_set",
    "fold_train_set",
]
