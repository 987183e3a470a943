"""Pure comparison of a batch: a challenger scores the vectors the champion scored, one ONNX call per batch.

No Kafka, no registry: records in, ``shadow-comparisons`` / ``shadow-rankings`` records out. Every output field but
``compared_at`` and ``challenger_latency_us`` is a function of the input record and the challenger (its version,
alias, features, threshold and scorer), so a replay reproduces it:

* a prediction's ``features`` map (name -> value as fed to the champion) is reordered into the challenger's feature
  order; a challenger needing a name the map lacks reads the event's ``feature-log`` vector instead (the join is
  :mod:`~slipstream.monitoring.shadow.feature_join`'s), where a name the engine left out (it omits NaN) is NaN —
  which LightGBM, and so the ONNX graph, reads as missing, as the engine meant;
* a recommendation's items carry their features: the challenger ranker re-scores the same candidates, and its order
  (score descending, ties in the champion's order) is measured against the champion's with
  :func:`~slipstream.monitoring.ranking.rank_agreement`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from slipstream.monitoring.ranking import DEFAULT_K, rank_agreement
from slipstream.monitoring.shadow.challengers import Challenger

PREDICTION = "PREDICTION"
FEATURE_LOG = "FEATURE_LOG"


def comparison_id(prediction_id: str, challenger_version: str) -> str:
    return f"{prediction_id}~{challenger_version}"


def ranking_id(request_id: str, champion_version: str, challenger_version: str) -> str:
    return f"{request_id}@{champion_version}~{challenger_version}"


def covers(challenger: Challenger, features: Mapping[str, float]) -> bool:
    """The map holds every feature the challenger needs (then it scores exactly what the champion saw)."""
    return all(name in features for name in challenger.feature_names)


def missing(challenger: Challenger, features: Mapping[str, float]) -> list[str]:
    return [name for name in challenger.feature_names if name not in features]


def matrix(vectors: Sequence[Mapping[str, float]], names: Sequence[str]) -> npt.NDArray[np.float64]:
    """Rows in the challenger's feature order (float64, as the ONNX graphs take); an absent name is NaN."""
    out = np.empty((len(vectors), len(names)), dtype=np.float64)
    nan = math.nan
    for i, vector in enumerate(vectors):
        out[i] = [vector.get(name, nan) for name in names]
    return out


def score(challenger: Challenger, x: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], float]:
    """One ONNX call for the whole batch; the scores and the wall time per row in microseconds."""
    if len(x) == 0:
        return np.empty(0, dtype=np.float64), 0.0
    start = time.perf_counter_ns()
    scores = np.asarray(challenger.scorer.predict(x), dtype=np.float64)
    elapsed_us = (time.perf_counter_ns() - start) / 1000.0
    return scores, elapsed_us / len(x)


def comparison(
    prediction: Mapping[str, Any],
    challenger: Challenger,
    challenger_score: float,
    source: str,
    latency_us: float,
    compared_at: datetime,
) -> dict[str, Any]:
    """The ``shadow-comparisons`` record of one champion prediction and one challenger's score of its vector."""
    champion_score = float(prediction["score"])
    champion_decision = bool(prediction["decision"])
    decision = challenger_score >= challenger.threshold
    return {
        "comparison_id": comparison_id(prediction["prediction_id"], challenger.version),
        "prediction_id": prediction["prediction_id"],
        "event_id": prediction["event_id"],
        "customer_id": prediction["customer_id"],
        "model_name": prediction["model_name"],
        "event_time": prediction["event_time"],
        "champion_version": prediction["model_version"],
        "challenger_version": challenger.version,
        "challenger_alias": challenger.alias,
        "champion_score": champion_score,
        "challenger_score": float(challenger_score),
        "champion_threshold": float(prediction["threshold"]),
        "challenger_threshold": float(challenger.threshold),
        "champion_decision": champion_decision,
        "challenger_decision": bool(decision),
        "flip": bool(decision) != champion_decision,
        "score_delta": float(challenger_score) - champion_score,
        "feature_source": source,
        "challenger_latency_us": float(latency_us),
        "compared_at": compared_at,
    }


def compare_predictions(
    predictions: Sequence[Mapping[str, Any]],
    vectors: Sequence[Mapping[str, float]],
    source: str,
    challenger: Challenger,
    compared_at: datetime,
) -> list[dict[str, Any]]:
    """Score ``vectors[i]`` (the vector of ``predictions[i]``) with the challenger in one call; the comparisons."""
    scores, latency_us = score(challenger, matrix(vectors, challenger.feature_names))
    return [
        comparison(p, challenger, float(s), source, latency_us, compared_at)
        for p, s in zip(predictions, scores, strict=True)
    ]


def champion_order(recommendation: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The champion's items best first: by ``rank``, ties in list order."""
    items: list[Mapping[str, Any]] = recommendation["items"]
    return [item for _, item in sorted(enumerate(items), key=lambda pair: (int(pair[1]["rank"]), pair[0]))]


def challenger_order(items: Sequence[Mapping[str, Any]], scores: npt.NDArray[np.float64]) -> list[int]:
    """Item ids by the challenger's score, best first; ties keep the champion's order (``items`` is in it)."""
    order = sorted(range(len(items)), key=lambda i: (-float(scores[i]), i))
    return [int(items[i]["item_id"]) for i in order]


def compare_rankings(
    recommendations: Sequence[Mapping[str, Any]],
    challenger: Challenger,
    compared_at: datetime,
    k: int = DEFAULT_K,
) -> list[dict[str, Any]]:
    """Re-rank every recommendation's candidates with the challenger (all items of the batch in one call) and
    measure the challenger's order against the champion's. Every item must carry the challenger's features."""
    ordered = [champion_order(r) for r in recommendations]
    x = matrix([item["features"] for items in ordered for item in items], challenger.feature_names)
    scores, latency_us = score(challenger, x)
    out: list[dict[str, Any]] = []
    start = 0
    for rec, items in zip(recommendations, ordered, strict=True):
        chunk = scores[start : start + len(items)]
        start += len(items)
        reference = [int(item["item_id"]) for item in items]
        other = challenger_order(items, chunk)
        agreement = rank_agreement(reference, other, k)
        out.append(
            {
                "comparison_id": ranking_id(rec["request_id"], rec["model_version"], challenger.version),
                "request_id": rec["request_id"],
                "user_id": rec["user_id"],
                "model_name": rec["model_name"],
                "event_time": rec["event_time"],
                "champion_version": rec["model_version"],
                "challenger_version": challenger.version,
                "challenger_alias": challenger.alias,
                "k": agreement.k,
                "n_items": agreement.n_items,
                "overlap_at_k": agreement.overlap_at_k,
                "kendall_tau": agreement.kendall_tau,
                "ndcg_at_k": agreement.ndcg_at_k,
                "top_changed": agreement.top_changed,
                "challenger_items": other[: agreement.k],
                "challenger_latency_us": latency_us * len(items),
                "compared_at": compared_at,
            }
        )
    return out
