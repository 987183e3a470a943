"""The fraud model: a deterministic LightGBM binary classifier over ``FRAUD.model_input``.

:func:`train_fraud` fits it (early stopping on the validation frame's average precision when one is given, and a
decision threshold chosen there: the one of maximal F1); :func:`predict` scores a frame; :func:`tune_fraud` picks
hyper-parameters from a small grid by average precision on a validation week (never on a test week).

Determinism: ``deterministic=True``, ``force_row_wise=True``, one thread and every seed fixed, so the same data and
seed give the same trees, bit for bit.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pandas as pd

from slipstream.features.definitions.fraud import FRAUD
from slipstream.models.dataset import require_columns
from slipstream.models.exceptions import InvalidInputError, MissingFeaturesError
from slipstream.models.lgbm import deterministic_params, with_rounds

F64 = npt.NDArray[np.float64]

DEFAULT_PARAMS: Final[Mapping[str, Any]] = {
    "num_leaves": 31,
    "learning_rate": 0.05,
    "min_data_in_leaf": 100,
    "n_estimators": 300,
}
DEFAULT_GRID: Final[Mapping[str, Sequence[Any]]] = {
    "num_leaves": (15, 63),
    "learning_rate": (0.03, 0.1),
    "min_data_in_leaf": (50, 200),
    "n_estimators": (300,),
}
EARLY_STOPPING_ROUNDS: Final = 50
# Amount bins: with LightGBM's default 255 quantile bins the top bins span ~200-240, so no split can sit at the
# scenario-1 rule (amount > 220) and a quarter of those frauds scored low. 4095 bins put a boundary close to it.
AMOUNT_MAX_BIN: Final = 4095
DEFAULT_MAX_BIN: Final = 255
DEFAULT_THRESHOLD: Final = 0.5


@dataclass(frozen=True)
class FraudModel:
    """A trained booster, the feature order it reads, its decision threshold and the parameters that made it."""

    booster: lgb.Booster
    feature_names: tuple[str, ...]
    threshold: float
    params: dict[str, Any] = field(default_factory=dict)
    best_iteration: int = 0


def _fixed_params(seed: int) -> dict[str, Any]:
    return {
        "objective": "binary",
        "metric": ["average_precision", "auc"],
        **deterministic_params(seed),
    }


def best_f1_threshold(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """The score threshold (predict fraud when ``score >= threshold``) of maximal F1; ties: the higher threshold."""
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    positives = int(y.sum())
    if len(y) == 0 or positives == 0:
        return DEFAULT_THRESHOLD
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    last_of_tie = np.r_[s_sorted[1:] != s_sorted[:-1], True]  # a threshold takes every row of a tied score
    tp = np.cumsum(y_sorted)[last_of_tie]
    flagged = (np.arange(len(y)) + 1)[last_of_tie]
    f1 = 2 * tp / (flagged + positives)
    return float(s_sorted[last_of_tie][int(np.argmax(f1))])


def _matrix(frame: pd.DataFrame, names: Sequence[str]) -> F64:
    missing = [n for n in names if n not in frame.columns]
    if missing:
        msg = f"frame lacks model features {missing}"
        raise MissingFeaturesError(msg)
    return frame.loc[:, list(names)].to_numpy(dtype=np.float64)


def _labels(frame: pd.DataFrame, what: str) -> npt.NDArray[np.int64]:
    require_columns(frame, ("label",), what)
    y = frame["label"].to_numpy()
    if len(y) == 0:
        msg = f"{what} frame is empty"
        raise InvalidInputError(msg)
    if not np.isin(y, (0, 1)).all():
        msg = f"{what} labels must be 0 or 1, got {sorted(pd.unique(y).tolist())[:10]}"
        raise InvalidInputError(msg)
    return y.astype(np.int64)


def train_fraud(
    train: pd.DataFrame,
    valid: pd.DataFrame | None = None,
    *,
    params: Mapping[str, Any] | None = None,
    seed: int = 42,
    progress: Callable[[str], None] | None = None,
) -> FraudModel:
    """Fit the LightGBM fraud classifier on ``train`` (``label`` plus ``FRAUD.model_input``).

    ``params`` overrides :data:`DEFAULT_PARAMS` (``n_estimators`` is the number of boosting rounds; any LightGBM
    parameter is accepted). With ``valid``: early stopping on its average precision and a max-F1 threshold from
    it; without: all rounds, threshold 0.5.
    """
    say = progress or (lambda _message: None)
    names = tuple(FRAUD.model_input)
    y = _labels(train, "train")
    if y.min() == y.max():
        msg = f"train labels hold a single class ({int(y[0])}) over {len(y):,} rows"
        raise InvalidInputError(msg)
    chosen, rounds = with_rounds(DEFAULT_PARAMS, params)
    if "max_bin_by_feature" not in chosen:
        chosen["max_bin_by_feature"] = [AMOUNT_MAX_BIN if n == "TX_AMOUNT" else DEFAULT_MAX_BIN for n in names]
    lgb_params = {**chosen, **_fixed_params(seed)}
    data = lgb.Dataset(_matrix(train, names), label=y, feature_name=list(names), free_raw_data=True)
    callbacks: list[Callable[..., Any]] = []
    valid_sets: list[lgb.Dataset] = []
    if valid is not None:
        y_valid = _labels(valid, "valid")
        valid_sets = [lgb.Dataset(_matrix(valid, names), label=y_valid, reference=data)]
        callbacks.append(lgb.early_stopping(EARLY_STOPPING_ROUNDS, first_metric_only=True, verbose=False))
    booster = lgb.train(lgb_params, data, num_boost_round=rounds, valid_sets=valid_sets, callbacks=callbacks)
    best = int(booster.best_iteration) if valid is not None and booster.best_iteration > 0 else rounds
    threshold = DEFAULT_THRESHOLD
    if valid is not None:
        scores = booster.predict(_matrix(valid, names), num_iteration=best)
        threshold = best_f1_threshold(_labels(valid, "valid"), np.asarray(scores, dtype=np.float64))
    say(f"trained {best} rounds on {len(y):,} rows ({int(y.sum()):,} frauds), threshold {threshold:.4f}")
    stored = {**chosen, "n_estimators": rounds, **_fixed_params(seed)}
    return FraudModel(booster, names, float(threshold), stored, best)


def predict(model: FraudModel, frame: pd.DataFrame) -> F64:
    """Fraud probabilities for every row of ``frame``, read in the model's feature order."""
    matrix = _matrix(frame, model.feature_names)
    scores = model.booster.predict(matrix, num_iteration=model.best_iteration)
    return np.asarray(scores, dtype=np.float64)


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of a grid, in a fixed order (keys sorted, values as given)."""
    keys = sorted(grid)
    for key in keys:
        if not grid[key]:
            msg = f"grid entry {key!r} has no values"
            raise InvalidInputError(msg)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]


def tune_fraud(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    grid: Mapping[str, Sequence[Any]] | None = None,
    *,
    seed: int = 42,
    progress: Callable[[str], None] | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Pick hyper-parameters by average precision on ``valid`` (ties: the earlier grid point).

    Returns the chosen parameters (``n_estimators`` set to the early-stopped best round, ready to refit on another
    week without a validation frame) and the table of every grid point, best first.
    """
    say = progress or (lambda _message: None)
    rows: list[dict[str, Any]] = []
    for i, point in enumerate(grid_points(grid if grid is not None else DEFAULT_GRID)):
        model = train_fraud(train, valid, params=point, seed=seed)
        scores = model.booster.best_score["valid_0"]  # LightGBM's own metrics at the best round
        row = {**point, "best_iteration": model.best_iteration}
        row["average_precision"] = float(scores["average_precision"])
        row["auc_roc"] = float(scores["auc"])
        row["order"] = i
        rows.append(row)
        say(f"grid {i + 1}: {point} -> AP {row['average_precision']:.4f} ({model.best_iteration} rounds)")
    table = pd.DataFrame(rows).sort_values(["average_precision", "order"], ascending=[False, True], kind="stable")
    best = rows[int(table["order"].iloc[0])]
    chosen = {key: best[key] for key in sorted(grid if grid is not None else DEFAULT_GRID)}
    chosen["n_estimators"] = int(best["best_iteration"])
    return chosen, table.drop(columns="order").reset_index(drop=True)


__all__ = [
    "DEFAULT_GRID",
    "DEFAULT_PARAMS",
    "FraudModel",
    "best_f1_threshold",
    "grid_points",
    "predict",
    "train_fraud",
    "tune_fraud",
]
