"""Small, exact pieces for the shadow consumer's unit tests: a linear scorer, challengers, records, events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from slipstream.monitoring.shadow.challengers import Challenger
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.transport.consumer import ConsumedEvent
from tests.samples import T0, sample


class Linear:
    """score = x @ w, NaN read as 0; counts its calls (one per batch is the contract)."""

    def __init__(self, weights: Sequence[float]) -> None:
        self.w = np.asarray(weights, dtype=np.float64)
        self.calls = 0

    def predict(self, x: npt.ArrayLike) -> npt.NDArray[np.float64]:
        self.calls += 1
        matrix = np.nan_to_num(np.asarray(x, dtype=np.float64))
        return np.asarray(matrix @ self.w, dtype=np.float64)


def challenger(
    names: Sequence[str],
    weights: Sequence[float],
    *,
    alias: str = "challenger",
    version: str = "7",
    model: str = "fraud",
    kind: str = "binary",
    threshold: float = 0.5,
) -> Challenger:
    return Challenger(model, alias, version, tuple(names), threshold, kind, Linear(weights))


def prediction(
    i: int, features: Mapping[str, float], *, score: float = 0.25, seconds: float | None = None
) -> dict[str, Any]:
    record = sample("prediction", i)
    t = T0 + timedelta(seconds=i if seconds is None else seconds)
    record.update(features=dict(features), score=score, decision=score >= 0.5, event_time=t)
    return record


def vector(i: int, features: Mapping[str, float], *, seconds: float | None = None) -> dict[str, Any]:
    t = T0 + timedelta(seconds=i if seconds is None else seconds)
    return {
        "feature_set": "fraud",
        "event_id": str(i),
        "entity_key": "596",
        "event_time": t,
        "features": dict(features),
        "newest_event_time": t,
        "computed_at": t,
    }


def event(contracts: Contracts, topic: str, value: Mapping[str, Any], offset: int, partition: int = 0) -> ConsumedEvent:
    return ConsumedEvent(contracts.topic(topic), partition, offset, None, b"596", dict(value))
