"""What travels with a registered model: its checksum, its model card, and reference distributions for drift."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from slipstream.models.exceptions import ArtifactCorruptError, FeatureMismatchError, InvalidInputError

ONNX_FILE = "model.onnx"
BOOSTER_FILE = "model.txt"
CARD_FILE = "model_card.json"
QUANTILES = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify_checksum(data: bytes, expected: str, what: str) -> None:
    actual = sha256(data)
    if actual != expected:
        msg = f"{what} is corrupt: expected sha256 {expected}, got {actual}"
        raise ArtifactCorruptError(msg)


def verify_features(actual: Sequence[str], expected: Sequence[str], what: str) -> None:
    """Raise :class:`FeatureMismatchError` naming missing, unexpected and reordered features."""
    if list(actual) == list(expected):
        return
    missing = [f for f in expected if f not in actual]
    extra = [f for f in actual if f not in expected]
    parts = []
    if missing:
        parts.append(f"missing {missing}")
    if extra:
        parts.append(f"unexpected {extra}")
    if not parts:
        moved = [f"{f}@{i}->{list(actual).index(f)}" for i, f in enumerate(expected) if actual[i] != f]
        parts.append(f"same features in another order: {moved}")
    msg = f"{what} reads features that differ from the expected ones: " + "; ".join(parts)
    raise FeatureMismatchError(msg)


def reference_distribution(
    x: npt.ArrayLike,
    scores: npt.ArrayLike,
    feature_names: Sequence[str],
    *,
    bins: int = 20,
    score_range: tuple[float, float] | None = (0.0, 1.0),
) -> dict[str, Any]:
    """Per-feature quantiles and the score histogram of a (training) sample: the baseline drift checks compare to.

    ``score_range`` bounds the histogram: (0, 1) for probabilities; ``None`` for a ranker's raw scores (unbounded),
    which takes the scores' own min and max.
    """
    matrix = np.asarray(x, dtype=np.float64)
    score = np.asarray(scores, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] != len(feature_names) or matrix.shape[0] == 0:
        msg = f"reference sample must be (n>0, {len(feature_names)}), got shape {matrix.shape}"
        raise InvalidInputError(msg)
    features = {}
    for j, name in enumerate(feature_names):
        column = matrix[:, j]
        features[name] = {
            "quantiles": dict(zip([str(q) for q in QUANTILES], np.quantile(column, QUANTILES).tolist(), strict=True)),
            "mean": float(column.mean()),
            "std": float(column.std()),
        }
    counts, edges = np.histogram(score, bins=bins, range=score_range)
    return {
        "n": int(matrix.shape[0]),
        "features": features,
        "score": {"edges": edges.tolist(), "counts": counts.tolist(), "mean": float(score.mean())},
    }
