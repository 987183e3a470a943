"""The demo's recommendations, without a broker: the requests are the held-out users' candidates at the cut-off, each
answer is judged by the protocol's NDCG@10, and the live view, the status line and the report show what was served."""

from __future__ import annotations

import importlib

import lightgbm as lgb
import numpy as np
import orjson
import pandas as pd
from rich.console import Console

from slipstream.demo import LiveStats
from slipstream.demo.recommend import RecoQuery, reco_queries, served_ndcg
from slipstream.features.definitions.reco import FEATURES, POPULARITY
from slipstream.models.reco import RecoFit, RecoModel, ndcg_at_k

cli_demo = importlib.import_module("slipstream.cli.demo")
CUTOFF = pd.Timestamp("2024-01-22", tz="UTC")


def _fit() -> RecoFit:
    rng = np.random.default_rng(1)
    users, items = [3, 3, 3, 9, 9], [10, 11, 12, 10, 13]
    test = pd.DataFrame({"cutoff": CUTOFF, "user_id": users, "item_id": items, "category_id": [1, 2, 1, 1, 4]})
    for name in FEATURES:
        test[name] = rng.random(len(test))
    test[POPULARITY] = [5.0, 4.0, 3.0, 5.0, 1.0]
    test["score"] = [0.1, 0.9, 0.5, 0.2, 0.3]
    truth = pd.DataFrame({"user_id": [3, 3, 9, 42], "item_id": [11, 99, 13, 10], "label": [1, 2, 2, 1]})
    x, grades = test[list(FEATURES)].to_numpy(), [0, 1, 0, 0, 2]
    params = {"objective": "lambdarank", "verbose": -1, "min_data_in_leaf": 1, "num_threads": 1}
    model = RecoModel(lgb.train(params, lgb.Dataset(x, grades, group=[3, 2]), num_boost_round=1), tuple(FEATURES))
    return RecoFit(model, test, test, truth, CUTOFF, ("2024-01-01", "2024-01-28"), {})


def test_requests_are_the_held_out_candidates_at_the_cut_off() -> None:
    queries = reco_queries(_fit())
    assert [q.user_id for q in queries] == [3, 9]
    body = orjson.loads(queries[0].body)
    assert body == {
        "user_id": 3,
        "event_time": "2024-01-22T00:00:00+00:00",
        "candidates": [
            {"item_id": 10, "category_id": 1, "retrieval_views_7d": 5.0},
            {"item_id": 11, "category_id": 2, "retrieval_views_7d": 4.0},
            {"item_id": 12, "category_id": 1, "retrieval_views_7d": 3.0},
        ],
        "top_k": 10,
    }
    assert queries[0].gains == {11: 1.0, 99: 2.0}  # every future item of the user, ranked or not


def test_served_ndcg_is_the_protocols() -> None:
    query = reco_queries(_fit())[0]
    served = [{"item_id": 11}, {"item_id": 12}, {"item_id": 10}]  # by descending score
    expected = ndcg_at_k([0.9, 0.5, 0.1], [1, 0, 0], 10, ideal=[1, 2])
    assert served_ndcg(query, served) == expected
    assert np.isnan(served_ndcg(RecoQuery(b"{}", 1, {}, 0.0), served))  # no relevant item: not judged


def test_live_view_status_line_and_report_show_the_recommendations() -> None:
    stats = LiveStats()
    stats.reco.registered, stats.reco.loaded, stats.reco.offline_ndcg = "3", "3", 0.2345
    answer = {
        "user_id": 17,
        "model": {"name": "reco", "version": "3"},
        "items": [{"item_id": i} for i in range(10)],
        "timings_us": {"total_us": 2100.0},
    }
    stats.reco.on_answer(4.0, answer, 0.5)
    stats.reco.on_answer(6.0, answer, float("nan"))
    console = Console(record=True, width=200, color_system=None)
    console.print(cli_demo.live_view(stats, rate=200.0))
    text = console.export_text()
    assert "models serving" in text
    assert "NDCG@10 0.500 over 1 answers (offline 0.234)" in text
    assert "user 17 → top 10: 0, 1, 2, 3, 4, …" in text
    assert "by reco v3" in text
    assert "reco reco v3 served 2 p50/p99 5.0/6.0 ms ndcg@10 0.500" in cli_demo.status_line(stats)
    (reco_row,) = [row for row in stats.model_rows() if row.model == "reco"]
    assert (reco_row.role, reco_row.version, reco_row.served, reco_row.p50_ms) == ("champion", "3", 2, 5.0)
    summary = stats.reco.summary()
    assert summary["registered_version"] == summary["loaded_version"] == "3"
    assert (summary["requests"], summary["errors"], summary["ndcg_at_10"]) == (2, 0, 0.5)
