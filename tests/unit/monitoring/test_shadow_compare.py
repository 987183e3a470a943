"""The pure comparison: reordering into the challenger's features, one call per batch, ids and determinism."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from slipstream.monitoring.shadow.compare import (
    FEATURE_LOG,
    PREDICTION,
    compare_predictions,
    compare_rankings,
    covers,
    matrix,
)
from tests.samples import sample
from tests.unit.monitoring.shadow_world import Linear, challenger, prediction

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_matrix_reorders_into_the_challengers_order_and_reads_absent_as_nan() -> None:
    x = matrix([{"a": 1.0, "b": 2.0, "c": 3.0}, {"c": 6.0, "a": 4.0}], ["c", "a", "b"])
    assert x.dtype == np.float64
    assert x[0].tolist() == [3.0, 1.0, 2.0]
    assert x[1][:2].tolist() == [6.0, 4.0] and math.isnan(x[1][2])


def test_comparisons_of_a_batch() -> None:
    c = challenger(["b", "a"], [1.0, 0.1], version="9", threshold=0.6)
    preds = [prediction(1, {"a": 2.0, "b": 0.3}, score=0.7), prediction(2, {"a": 1.0, "b": 0.5}, score=0.2)]
    got = compare_predictions(preds, [p["features"] for p in preds], PREDICTION, c, NOW)
    assert isinstance(c.scorer, Linear) and c.scorer.calls == 1  # one call for the whole batch
    first, second = got
    assert first["comparison_id"] == "1@3~9" and first["prediction_id"] == "1@3"
    assert first["challenger_score"] == pytest.approx(0.5)  # 0.3 * 1 + 2.0 * 0.1
    assert (first["champion_decision"], first["challenger_decision"], first["flip"]) == (True, False, True)
    assert first["score_delta"] == pytest.approx(0.5 - 0.7)
    assert second["challenger_score"] == pytest.approx(0.6)
    assert (second["challenger_decision"], second["flip"]) == (True, True)  # >= threshold, like the champion's
    assert first["challenger_alias"] == "challenger" and first["challenger_threshold"] == 0.6
    assert first["feature_source"] == PREDICTION and first["compared_at"] == NOW
    assert first["event_time"] == preds[0]["event_time"] and first["customer_id"] == 596


def test_replay_reproduces_every_field_but_time_and_latency() -> None:
    preds = [prediction(i, {"a": i / 10, "b": 1 - i / 10}) for i in range(20)]
    runs = []
    for when in (NOW, datetime(2027, 1, 1, tzinfo=UTC)):
        c = challenger(["a", "b"], [0.3, 0.4])
        runs.append(compare_predictions(preds, [p["features"] for p in preds], FEATURE_LOG, c, when))
    strip = [{k: v for k, v in r.items() if k not in ("compared_at", "challenger_latency_us")} for r in runs[0]]
    again = [{k: v for k, v in r.items() if k not in ("compared_at", "challenger_latency_us")} for r in runs[1]]
    assert strip == again


def test_covers() -> None:
    assert covers(challenger(["a"], [1.0]), {"a": 1.0, "b": 2.0})
    assert not covers(challenger(["a", "new"], [1.0, 1.0]), {"a": 1.0, "b": 2.0})


def test_rankings_rerank_the_same_candidates() -> None:
    rec = sample("recommendation", 3)
    rec["items"] = [
        {"item_id": 11, "score": 3.0, "rank": 1, "features": {"f": 0.1}},
        {"item_id": 12, "score": 2.0, "rank": 2, "features": {"f": 0.9}},
        {"item_id": 13, "score": 1.0, "rank": 3, "features": {"f": 0.5}},
    ]
    other = sample("recommendation", 4)
    c = challenger(["f"], [1.0], model="reco", kind="ranking", version="2")
    got = compare_rankings([rec, other], c, NOW)
    assert isinstance(c.scorer, Linear) and c.scorer.calls == 1  # all items of the batch in one call
    first = got[0]
    assert first["comparison_id"] == "r-3@1~2"
    assert first["challenger_items"] == [12, 13, 11]
    assert (first["k"], first["n_items"], first["top_changed"]) == (3, 3, True)
    assert first["overlap_at_k"] == 1.0
    assert first["kendall_tau"] == pytest.approx(-1 / 3)  # pairs (11,12) (11,13) discordant, (12,13) concordant
    # the sample's two items carry equal features: a tie keeps the champion's order
    assert got[1]["challenger_items"] == [5, 9] and got[1]["kendall_tau"] == 1.0
