"""The demo's recommendations, without a broker: the requests are the held-out users' candidates at the cut-off (on
Kafka, every candidate asked back), each answer is judged by the protocol's NDCG@10, the reco challenger's held-out
figures are the protocol's, and the live view, the status line and the report show what was served and how the
challenger's rankings compare."""

from __future__ import annotations

import importlib

import lightgbm as lgb
import numpy as np
import orjson
import pandas as pd
from rich.console import Console

from slipstream.demo import LiveStats
from slipstream.demo.recommend import RecoQuery, reco_queries, served_ndcg
from slipstream.demo.training import held_out_report
from slipstream.features.definitions.reco import FEATURES, POPULARITY
from slipstream.models.reco import RecoFit, RecoModel, fit_reco, ndcg_at_k, train_ranker
from slipstream.schemas.contracts import Contracts
from slipstream.streams.simulate.reco import RecoSimConfig, simulate_interactions

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


def test_the_kafka_request_is_the_same_request_with_every_candidate_asked_back() -> None:
    query = reco_queries(_fit())[0]
    record = query.record("demo-7")
    body = orjson.loads(query.body)
    assert record["request_id"] == "demo-7"
    assert (record["user_id"], record["candidates"], record["top_k"]) == (3, body["candidates"], None)
    assert record["event_time"] == CUTOFF.to_pydatetime() and record["event_time"].tzinfo is not None
    serde = Contracts.default().serde("recommendation-requests")
    assert serde.decode(serde.encode(record)) == record  # the contract's record, as score-stream --reco reads it
    assert "request_id" not in query.request  # each send gets its own id


def test_the_challengers_held_out_figures_are_the_protocols() -> None:
    sim = simulate_interactions(RecoSimConfig(n_users=150, n_items=400, n_categories=8, days=23, seed=11))
    fit = fit_reco(sim, params={"n_estimators": 10})
    report = held_out_report(fit, fit.model)  # the champion itself: exactly the protocol's report
    assert report == fit.report
    rival = held_out_report(fit, train_ranker(fit.train, params={"n_estimators": 3}))
    assert rival["popularity"] == fit.report["popularity"]
    assert rival["ndcg_at_10"] != fit.report["ndcg_at_10"] and 0.0 < rival["ndcg_at_10"] < 1.0


def _ranking(request_id: str, overlap: float, tau: float, ndcg: float, top_changed: bool) -> dict[str, object]:
    return {
        "request_id": request_id,
        "challenger_version": "4",
        "k": 10,
        "overlap_at_k": overlap,
        "kendall_tau": tau,
        "ndcg_at_k": ndcg,
        "top_changed": top_changed,
    }


def test_the_reco_challenger_row_shows_its_rankings_against_the_champion() -> None:
    stats = LiveStats()
    stats.verdicts.on_request("r-1", 1_000.0)
    stats.verdicts.on_request("r-2", 2_000.0)
    stats.on_event("shadow-rankings", _ranking("r-1", 0.8, 0.5, 0.9, False), 1_040, 0.0)
    stats.on_event("shadow-rankings", _ranking("r-2", 0.6, 0.1, 0.7, True), 2_060, 0.0)
    stats.on_event("shadow-rankings", _ranking("r-0", 1.0, 1.0, 1.0, False), 2_100, 0.0)  # sent before: no lag
    (row,) = [r for r in stats.model_rows() if r.model == "reco" and r.role == "challenger"]
    assert (row.version, row.path, row.served, row.p50_ms, row.p99_ms) == ("4", "shadow", 3, 50.0, 59.8)
    assert row.quality == "vs champion: overlap@10 0.80  tau 0.53  NDCG@10 0.867  new top item 33.3%"
    summary = stats.verdicts.summary()["rankers"]["4"]
    assert summary["compared"] == 3
    assert summary["mean_overlap_at_k"] == (0.8 + 0.6 + 1.0) / 3
    assert summary["mean_kendall_tau"] == (0.5 + 0.1 + 1.0) / 3
    assert summary["lag_from_request_p50_ms"] == 50.0
    console = Console(record=True, width=250, color_system=None)
    console.print(cli_demo.live_view(stats, rate=200.0))
    assert "overlap@10 0.80  tau 0.53" in console.export_text()
    assert "reco challenger v4 compared 3 overlap@10 0.800 tau 0.533 ndcg@10 0.867" in cli_demo.status_line(stats)
