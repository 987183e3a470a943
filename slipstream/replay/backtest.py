"""A challenger backtest on a replay: the challenger scores every replayed prediction's exact features, through the
shadow consumer's own comparison (:func:`slipstream.monitoring.shadow.compare.compare_predictions`), and both are
measured against the labels the slice holds."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from slipstream.models.exceptions import InvalidInputError
from slipstream.models.metrics import average_precision, roc_auc
from slipstream.models.registry import LoadedModel
from slipstream.monitoring.shadow.challengers import Challenger
from slipstream.monitoring.shadow.compare import PREDICTION, compare_predictions
from slipstream.replay.slice_file import SliceRecord
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.exceptions import DecodeError

BATCH = 2_000


def label_map(records: Iterable[SliceRecord], contracts: Contracts) -> dict[str, int]:
    """Event id -> 0/1 from ``labels`` records; the first label of an event stands (as the label join keeps it)."""
    serde = contracts.serde("labels")
    out: dict[str, int] = {}
    for record in records:
        try:
            label = serde.decode(record.value)
        except DecodeError:
            continue
        out.setdefault(str(label["transaction_id"]), int(bool(label["is_fraud"])))
    return out


def _metrics(y: Sequence[int], scores: Sequence[float]) -> dict[str, float | None]:
    out: dict[str, float | None] = {"auc": None, "average_precision": None}
    try:
        out["auc"] = roc_auc(y, scores)
    except InvalidInputError:
        pass
    try:
        out["average_precision"] = average_precision(y, scores)
    except InvalidInputError:
        pass
    return out


def backtest(
    predictions: Sequence[dict[str, Any]], challenger: LoadedModel, labels: Iterable[SliceRecord], contracts: Contracts
) -> dict[str, Any]:
    """Score deltas, flips and — where the slice holds labels — realised AUC and AP of champion and challenger."""
    shadow = Challenger.of(challenger, "backtest")
    now = datetime.now(UTC)
    comparisons: list[dict[str, Any]] = []
    for i in range(0, len(predictions), BATCH):
        batch = predictions[i : i + BATCH]
        comparisons.extend(compare_predictions(batch, [p["features"] for p in batch], PREDICTION, shadow, now))
    known = label_map(labels, contracts)
    deltas = np.array([c["score_delta"] for c in comparisons], dtype=np.float64)
    flips = sum(bool(c["flip"]) for c in comparisons)
    labelled = [c for c in comparisons if str(c["event_id"]) in known]
    y = [known[str(c["event_id"])] for c in labelled]
    magnitude = np.abs(deltas)
    return {
        "challenger_version": challenger.version,
        "champion_versions": sorted({str(p["model_version"]) for p in predictions}),
        "scored": len(comparisons),
        "flips": flips,
        "flip_rate": flips / len(comparisons) if comparisons else 0.0,
        "flagged": {
            "champion": sum(bool(c["champion_decision"]) for c in comparisons),
            "challenger": sum(bool(c["challenger_decision"]) for c in comparisons),
        },
        "score_delta": {
            "mean": float(deltas.mean()) if len(deltas) else 0.0,
            "abs_p50": float(np.percentile(magnitude, 50)) if len(deltas) else 0.0,
            "abs_p99": float(np.percentile(magnitude, 99)) if len(deltas) else 0.0,
            "abs_max": float(np.abs(deltas).max()) if len(deltas) else 0.0,
        },
        "labelled": len(labelled),
        "positives": int(sum(y)),
        "champion": _metrics(y, [c["champion_score"] for c in labelled]),
        "challenger": _metrics(y, [c["challenger_score"] for c in labelled]),
        "deltas": deltas.tolist(),
    }
