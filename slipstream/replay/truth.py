"""A third opinion: the offline engine's features of the window's scored events, from the slice's own history and
window, compared with both the recorded and the replayed features.

When a reproduction differs, this says which side is right. The offline engine is the definition of the features
(the online engine equals it, proven by ``features verify``); a recorded prediction whose features differ from it
was computed from a state the engine had not finished (a scorer further behind the engine than the lateness, or an
engine further behind than the scorer's recent-events horizon: docs/architecture.md, "Scoring")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from slipstream.features.base import FeatureSet
from slipstream.features.offline import compute_offline
from slipstream.replay.diff import Tolerance
from slipstream.replay.slice_file import SliceReader
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.exceptions import DecodeError


def _frame(reader: SliceReader, contracts: Contracts, topic: str) -> pd.DataFrame:
    serde = contracts.serde(topic)
    rows: list[dict[str, Any]] = []
    for part in ("history", "slice"):
        for record in reader.records(part, topic):
            try:
                rows.append(serde.decode(record.value))
            except DecodeError:
                continue  # dead-lettered where it was read: it reaches no feature
    return pd.DataFrame(rows)


def offline_features(reader: SliceReader, contracts: Contracts, feature_set: FeatureSet) -> dict[str, dict[str, float]]:
    """Event id -> the offline engine's model inputs for every trigger event the slice holds."""
    topics = {s.topic for v in feature_set.views for s in v.sources} | {feature_set.trigger}
    frames = {t: _frame(reader, contracts, t) for t in sorted(topics)}
    result = compute_offline(feature_set, frames)
    id_field = next(s.id_field for v in feature_set.views for s in v.sources if s.topic == feature_set.trigger)
    names = list(feature_set.model_input)
    vectors = result.vectors.set_index(id_field)[names]
    return {str(i): {n: float(x) for n, x in zip(names, row, strict=True)} for i, row in vectors.iterrows()}


def against_offline(
    predictions: Sequence[Mapping[str, Any]], offline: Mapping[str, Mapping[str, float]], tol: Tolerance
) -> dict[str, Any]:
    """How many predictions have features the offline engine does not give, and which features."""
    wrong = 0
    by_feature: dict[str, int] = {}
    for p in predictions:
        truth = offline.get(str(p["event_id"]))
        if truth is None:
            continue
        bad = [n for n, x in truth.items() if n in p["features"] and not tol.feature_equal(float(p["features"][n]), x)]
        wrong += bool(bad)
        for name in bad:
            by_feature[name] = by_feature.get(name, 0) + 1
    return {"checked": len(predictions), "differ": wrong, "by_feature": dict(sorted(by_feature.items()))}
