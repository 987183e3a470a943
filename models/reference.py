"""The drift reference stored with a model version: mergeable histograms of every feature and of the score.

:func:`drift_reference` sketches a training sample as fixed-edge histograms, one per subject (each feature, then
``score``), with the counts of the whole sample and of every ``granularity_s`` event-time window (UTC-aligned). A drift
monitor compares a live window with the totals, and calibrates its thresholds by comparing each training window with
the totals minus that window: histograms on fixed edges add and subtract, raw samples never leave training.

Layout (JSON-able; every number finite)::

    {"version": 1, "granularity_s": 86400, "n": 1234,
     "window_starts": [epoch µs, ...],            # windows with at least one row, ascending
     "window_n": [rows per window, ...],
     "subjects": {name: {"kind": "binary" | "numeric",
                         "edges": [e0, ..., ek],  # interior cut points: bins (-inf, e0), [e0, e1), ..., [ek, +inf)
                         "counts": [...],         # len(edges) + 1 totals
                         "window_counts": [[...], ...]}}}  # one row per window_starts entry

The open ends (-inf and +inf) are implied rather than written: JSON has no infinity. A value ``x`` falls in bin
``bisect_right(edges, x)``. Numeric edges are the sample's ``bins``-quantiles, deduplicated (a discrete feature gets
fewer bins); a binary feature (only 0 and 1 seen) has the single edge 0.5. The score (``kind`` ``numeric``) is cut at
its own quantiles too, clipped to [0, 1] for a probability (``score_range=(0, 1)``): equal-width bins over [0, 1]
would put nearly every fraud score in the first bin. Without event times the per-window part is empty
(``window_starts == []``) and a monitor cannot calibrate from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from slipstream.models.exceptions import InvalidInputError

SCORE: Final = "score"
VERSION: Final = 1
_US: Final = 1_000_000


def _edges(column: npt.NDArray[np.float64], bins: int, clip: tuple[float, float] | None) -> tuple[str, list[float]]:
    if np.isin(column, (0.0, 1.0)).all():
        return "binary", [0.5]
    cuts = np.quantile(column, np.linspace(0.0, 1.0, bins + 1)[1:-1], method="linear")
    if clip is not None:
        cuts = np.clip(cuts, *clip)
    unique = np.unique(cuts)
    # a cut at the sample's minimum would leave the first bin empty by construction
    unique = unique[unique > column.min()]
    return "numeric", [float(v) for v in unique]


def _epoch_us(event_times: Any, n: int) -> npt.NDArray[np.int64]:
    values = pd.Series(event_times)
    if len(values) != n:
        msg = f"event_times has {len(values)} values for {n} rows"
        raise InvalidInputError(msg)
    if pd.api.types.is_datetime64_any_dtype(values):
        if getattr(values.dt, "tz", None) is None:
            msg = "event_times are naive datetimes: event time is always timezone-aware"
            raise InvalidInputError(msg)
        micros = values.dt.tz_convert("UTC").astype("datetime64[us, UTC]").astype(np.int64)
        return np.asarray(micros.to_numpy(), dtype=np.int64)
    if pd.api.types.is_integer_dtype(values):
        return values.to_numpy(dtype=np.int64)
    msg = f"event_times must be tz-aware datetimes or epoch-microsecond ints, got dtype {values.dtype}"
    raise InvalidInputError(msg)


def _matrix(x: Any, names: Sequence[str]) -> npt.NDArray[np.float64]:
    matrix = x.loc[:, list(names)].to_numpy(dtype=np.float64) if isinstance(x, pd.DataFrame) else np.asarray(x, float)
    if matrix.ndim != 2 or matrix.shape[1] != len(names) or matrix.shape[0] == 0:
        msg = f"reference sample must be (n>0, {len(names)}), got shape {matrix.shape}"
        raise InvalidInputError(msg)
    return matrix


def drift_reference(
    x: pd.DataFrame | npt.ArrayLike,
    scores: npt.ArrayLike,
    event_times: Any,
    feature_names: Sequence[str],
    *,
    granularity_s: int = 86_400,
    bins: int = 20,
    score_range: tuple[float, float] | None = (0.0, 1.0),
) -> dict[str, Any]:
    """The drift sketch of a training sample (layout in the module docstring).

    ``x``: a frame holding ``feature_names`` or an (n, d) matrix in that order; ``scores``: the model's n scores;
    ``event_times``: n tz-aware datetimes or epoch-µs ints, or ``None`` (no per-window counts). Non-finite values are
    refused, naming the subject.
    """
    names = list(feature_names)
    if SCORE in names or len(set(names)) != len(names):
        msg = f"feature names must be unique and not {SCORE!r}: {names}"
        raise InvalidInputError(msg)
    if bins < 2 or granularity_s <= 0:
        msg = f"bins must be >= 2 and granularity_s > 0, got bins={bins!r}, granularity_s={granularity_s!r}"
        raise InvalidInputError(msg)
    matrix = _matrix(x, names)
    score = np.asarray(scores, dtype=np.float64).reshape(-1)
    n = matrix.shape[0]
    if score.shape[0] != n:
        msg = f"scores has {score.shape[0]} values for {n} rows"
        raise InvalidInputError(msg)
    if event_times is None:
        starts: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        window_of = None
    else:
        step = granularity_s * _US
        starts, window_of = np.unique(_epoch_us(event_times, n) // step * step, return_inverse=True)
    columns = [(name, matrix[:, j], None) for j, name in enumerate(names)]
    subjects: dict[str, Any] = {}
    for name, column, clip in [*columns, (SCORE, score, score_range)]:
        if not np.isfinite(column).all():
            msg = f"{name} has non-finite values in the reference sample"
            raise InvalidInputError(msg)
        kind, edges = _edges(column, bins, clip)
        index = np.searchsorted(np.asarray(edges), column, side="right")
        k = len(edges) + 1
        entry: dict[str, Any] = {"kind": kind, "edges": edges, "counts": np.bincount(index, minlength=k).tolist()}
        if window_of is not None:
            flat = np.bincount(window_of * k + index, minlength=len(starts) * k)
            entry["window_counts"] = flat.reshape(len(starts), k).tolist()
        else:
            entry["window_counts"] = []
        subjects[name] = entry
    window_n = np.bincount(window_of, minlength=len(starts)).tolist() if window_of is not None else []
    return {
        "version": VERSION,
        "granularity_s": int(granularity_s),
        "n": int(n),
        "window_starts": [int(s) for s in starts],
        "window_n": window_n,
        "subjects": subjects,
    }


__all__ = ["SCORE", "drift_reference"]
