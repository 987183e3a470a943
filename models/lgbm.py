"""LightGBM settings every Slipstream model shares: the same data and seed give the same trees, on any machine."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from slipstream.models.exceptions import InvalidInputError


def deterministic_params(seed: int) -> dict[str, Any]:
    """One thread, row-wise histograms, every random stream seeded; silent."""
    return {
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": 1,
        "seed": seed,
        "bagging_seed": seed,
        "feature_fraction_seed": seed,
        "data_random_seed": seed,
        "verbosity": -1,
    }


def with_rounds(defaults: Mapping[str, Any], params: Mapping[str, Any] | None) -> tuple[dict[str, Any], int]:
    """``defaults`` overridden by ``params``, with ``n_estimators`` taken out as the number of boosting rounds."""
    chosen = {**defaults, **(params or {})}
    rounds = int(chosen.pop("n_estimators"))
    if rounds < 1:
        msg = f"n_estimators must be >= 1, got {rounds!r}"
        raise InvalidInputError(msg)
    return chosen, rounds
