"""Percentiles and timing helpers shared by the benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    if not samples_ms:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "p999_ms": float("nan"), "n": 0}
    values = np.asarray(samples_ms, dtype=float)
    return {
        "p50_ms": round(float(np.percentile(values, 50)), 3),
        "p99_ms": round(float(np.percentile(values, 99)), 3),
        "p999_ms": round(float(np.percentile(values, 99.9)), 3),
        "max_ms": round(float(values.max()), 3),
        "n": int(values.size),
    }
