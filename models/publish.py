"""Registering a trained model, the one way the CLI, the demo and the benchmarks do it: evaluation metrics,
reference distributions of every feature and of the score, parameters with the boosting rounds kept, and a sample for
the ONNX parity gate. :func:`register_fraud` for the fraud classifier, :func:`register_reco` for the ranker."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from slipstream.features.definitions.fraud import FRAUD
from slipstream.models.artifacts import reference_distribution
from slipstream.models.dataset import data_hash
from slipstream.models.evaluation import fraud_metrics
from slipstream.models.fraud import FraudModel, predict
from slipstream.models.reco import FEATURES as RECO_FEATURES
from slipstream.models.reco import RecoFit, predict_scores
from slipstream.models.reference import drift_reference
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
    validated: FraudModel | None = None,
) -> tuple[RegisteredModel, dict[str, float]]:
    """Register ``model`` as a new version of ``name`` behind the parity gate; also returns its validation metrics.

    ``validated``: when ``model`` was refit on training + validation rows, the fit that saw only the training rows —
    the card's validation metrics and score reference are that fit's (out of sample), not the refit's."""
    names = list(FRAUD.model_input)
    scores = predict(validated or model, valid_set)
    train_scores = predict(model, train_set)
    reference = {
        **reference_distribution(train_set[names], train_scores, names),
        "drift": fraud_drift_reference(train_set, valid_set, scores, names),
    }
    metrics = {k: float(v) for k, v in fraud_metrics(valid_set, scores).items() if isinstance(v, int | float)}
    registered = registry.register(
        name,
        model.booster,
        names,
        threshold=model.threshold,
        reference=reference,
        metrics=metrics,
        params={**model.params, "best_iteration": model.best_iteration},
        data_window=data_window,
        data_hash=data_hash,
        sample=valid_set[names].to_numpy()[:sample_rows],
        producer=producer,
    )
    return registered, metrics


def fraud_drift_reference(
    train_set: pd.DataFrame, valid_set: pd.DataFrame, valid_scores: Any, names: list[str]
) -> dict[str, Any]:
    """The drift reference of a fraud model: the features of every training and validation day (they do not depend
    on the model), the score of the validation days only — a model's scores of the rows it was fit on are more
    extreme than any it gives later, so an in-sample score reference would see drift in every live window. The score
    subject's training windows hold no counts; calibration passes over windows that small."""
    both = pd.concat([train_set, valid_set], ignore_index=True)
    filler = np.concatenate([np.full(len(train_set), np.nan), np.asarray(valid_scores, dtype=np.float64)])
    reference = drift_reference(both[names], np.nan_to_num(filler, nan=0.5), both["event_time"], names)
    out_of_sample = drift_reference(valid_set[names], valid_scores, valid_set["event_time"], names)
    score = dict(out_of_sample["subjects"]["score"])
    where = {int(start): i for i, start in enumerate(out_of_sample["window_starts"])}
    bins = len(score["counts"])
    score["window_counts"] = [
        list(out_of_sample["subjects"]["score"]["window_counts"][where[int(start)]])
        if int(start) in where
        else [0] * bins
        for start in reference["window_starts"]
    ]
    reference["subjects"]["score"] = score
    return reference


def reco_metrics(report: dict[str, Any]) -> dict[str, float]:
    """The numbers of a :func:`~slipstream.models.reco.fit_reco` report worth keeping with the model: the ranker's
    ``ndcg_at_k`` and ``recall_at_k`` on the held-out users and the popularity baseline's (``popularity_…``)."""
    ranker = {key: float(v) for key, v in report.items() if key.startswith(("ndcg_at_", "recall_at_"))}
    baseline = {f"popularity_{key}": float(v) for key, v in report["popularity"].items()}
    return ranker | baseline


def register_reco(
    registry: ModelRegistry,
    name: str,
    fit: RecoFit,
    *,
    producer: EventProducer | None = None,
    sample_rows: int = 20_000,
) -> tuple[RegisteredModel, dict[str, float]]:
    """Register the ranker of ``fit`` as a new version of ``name`` (a ``ranking`` model card) behind the parity gate;
    also returns its held-out metrics (:func:`reco_metrics`).

    The ranker's score is a raw score (only its order means something), so it has no threshold (0.0 in the card).
    Reference distributions and the parity sample (``sample_rows`` evenly spaced rows) come from the training frame;
    the data hash is the training frame's. The drift sketch's windows are the training cut-off days (a candidate's
    time is its query's cut-off), so a reco monitor calibrates on as many windows as there are cut-offs."""
    names = list(RECO_FEATURES)
    frame = fit.train
    x = frame[names].to_numpy(dtype=np.float64)
    metrics = reco_metrics(fit.report)
    scores = predict_scores(fit.model, frame)
    # a candidate's time is its query's cut-off: the per-window counts are per training cut-off day
    drift = drift_reference(x, scores, frame["cutoff"], names, score_range=None)
    registered = registry.register(
        name,
        fit.model.booster,
        names,
        threshold=0.0,
        reference={**reference_distribution(x, scores, names, score_range=None), "drift": drift},
        metrics=metrics,
        params=fit.model.params,
        data_window=fit.data_window,
        data_hash=data_hash(frame),
        sample=x[:: max(1, len(x) // sample_rows)],
        producer=producer,
    )
    return registered, metrics
