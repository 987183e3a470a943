"""LightGBM settings every Slipstream model shares: the same data and seed give the same trees, on any machine."""

from __future__ import annotations

from typing import Any


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
