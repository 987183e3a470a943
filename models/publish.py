"""Registering a trained fraud model, the one way the CLI, the demo and the benchmarks do it: validation metrics,
reference distributions of every feature and of the score, parameters with the boosting rounds kept, and a
validation sample for the ONNX parity gate."""

from __future__ import annotations

import pandas as pd

from slipstream.features.definitions.fraud import FRAUD
from slipstream.models.artifacts import reference_distribution
from slipstream.models.evaluation import fraud_metrics
from slipstream.models.fraud import FraudModel, predict
from slipstream.models.registry import ModelRegistry, RegisteredModel
from slipstream.schemas.transport import EventProducer


def register_fraud(
    registry: ModelRegistry,
    name: str,
    model: FraudModel,
    train_set: pd.DataFrame,
    valid_set: pd.DataFrame,
    *,
    data_window: tuple[str, str],
    data_hash: str,
    producer: EventProducer | None = None,
    sample_rows: int = 10_000,
) -> tuple[RegisteredModel, dict[str, float]]:
    """Register ``model`` as a new version of ``name`` behind the parity gate; also returns its validation metrics."""
    names = list(FRAUD.model_input)
    scores = predict(model, valid_set)
    metrics = {k: float(v) for k, v in fraud_metrics(valid_set, scores).items() if isinstance(v, int | float)}
    registered = registry.register(
        name,
        model.booster,
        names,
        threshold=model.threshold,
        reference=reference_distribution(train_set[names], predict(model, train_set), names),
        metrics=metrics,
        params={**model.params, "best_iteration": model.best_iteration},
        data_window=data_window,
        data_hash=data_hash,
        sample=valid_set[names].to_numpy()[:sample_rows],
        producer=producer,
    )
    return registered, metrics
