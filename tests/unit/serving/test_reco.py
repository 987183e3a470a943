"""The reco ranker's pure parts: requests are validated naming the field, the features equal training's
construction (``slipstream.models.reco.candidate_frame``) value for value, and ranking is by score with ties in
candidate order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from slipstream.features.definitions.reco import FEATURES, RANKER_VIEWS, RECO
from slipstream.features.offline import EVENT_TIMESTAMP, compute_offline, latest_view_rows
from slipstream.models import reco as training
from slipstream.serving.base import ServingModel
from slipstream.serving.exceptions import FeaturesUnavailableError, InvalidRequestError, ModelUnavailableError
from slipstream.serving.reco import (
    MAX_CANDIDATES,
    RecoCandidate,
    RecoRows,
    RecoScorer,
    StoredRow,
    feature_matrix,
    normalize_reco_request,
)
from slipstream.streams.simulate.reco import RecoSimConfig, RecoSimulation, simulate_interactions

T0 = 1_700_000_000_000_000
EPOCH = pd.Timestamp(0, tz="UTC")
SMALL = RecoSimConfig(n_users=120, n_items=300, n_categories=8, days=23, seed=5)


def test_the_ranker_inputs_derive_from_the_reco_definition() -> None:
    """Declared once (features/definitions/reco.py): the views are RECO's, the order is what models were trained on."""
    assert training.FEATURES is FEATURES
    assert [v.view for v in RANKER_VIEWS] == list(RECO.views)
    assert [v.join_keys for v in RANKER_VIEWS] == [("user_id",), ("user_id", "category_id"), ("user_id", "item_id"),
                                                   ("item_id",)]  # fmt: skip
    assert [e for v in RANKER_VIEWS for e in v.extra] == ["USER_ITEM_SECONDS_SINCE_LAST"]
    assert [d for v in RANKER_VIEWS for d in v.defaults] == [-1.0]  # a missing row's recency; counts are 0
    assert FEATURES == (
        *("USER_NB_EVENTS_1H", "USER_NB_EVENTS_24H", "USER_NB_EVENTS_7D", "USER_AGE_S"),
        *("USER_CAT_NB_EVENTS_1H", "USER_CAT_NB_EVENTS_24H", "USER_CAT_NB_EVENTS_7D", "USER_CAT_AGE_S"),
        *("USER_ITEM_NB_EVENTS_7D", "USER_ITEM_AGE_S"),
        *("ITEM_NB_VIEWS_1H", "ITEM_NB_CLICKS_1H", "ITEM_CTR_1H", "ITEM_NB_VIEWS_24H", "ITEM_NB_CLICKS_24H"),
        *("ITEM_CTR_24H", "ITEM_AGE_S", "USER_ITEM_SECONDS_SINCE_LAST"),
        *("USER_CAT_AFFINITY_1H", "USER_CAT_AFFINITY_24H", "USER_CAT_AFFINITY_7D", "ITEM_RECENT_VIEWS_7D"),
    )


# --------------------------------------------------------------------------------------------------- features


@dataclass(frozen=True)
class Sim:
    sim: RecoSimulation
    view_rows: dict[str, pd.DataFrame]


@pytest.fixture(scope="module")
def sim() -> Sim:
    simulation = simulate_interactions(SMALL)
    return Sim(simulation, compute_offline(RECO, {"interactions": simulation.events}).view_rows)


def store_at(
    view_rows: Mapping[str, pd.DataFrame], cutoff: pd.Timestamp
) -> dict[str, dict[tuple[int, ...], StoredRow]]:
    """What the online store holds at ``cutoff``: each entity's latest row at or before it, by view and join keys."""
    out: dict[str, dict[tuple[int, ...], StoredRow]] = {}
    for view in RANKER_VIEWS:
        rows = view_rows[view.name]
        latest = latest_view_rows({view.name: rows[rows[EVENT_TIMESTAMP] <= cutoff]})[view.name]
        names = [c for c in latest.columns if c not in (*view.join_keys, EVENT_TIMESTAMP)]
        keys = latest[list(view.join_keys)].to_numpy(dtype=np.int64).tolist()
        micros = ((latest[EVENT_TIMESTAMP] - EPOCH) // pd.Timedelta(microseconds=1)).tolist()
        values = latest[names].to_dict("records")
        out[view.name] = {tuple(k): StoredRow(v, t) for k, v, t in zip(keys, values, micros, strict=True)}
    assert micros and isinstance(micros[0], int)
    return out


def rows_for(
    store: Mapping[str, Mapping[tuple[int, ...], StoredRow]], user: int, candidates: Sequence[RecoCandidate]
) -> RecoRows:
    return RecoRows(
        store["user_activity"].get((user,)),
        {c.category_id: store["user_category_affinity"].get((user, c.category_id)) for c in candidates},
        [store["user_item_recency"].get((user, c.item_id)) for c in candidates],
        [store["item_popularity"].get((c.item_id,)) for c in candidates],
    )


def test_features_equal_the_training_construction(sim: Sim) -> None:
    _, train_cutoffs = training.cutoffs(SMALL)
    cutoff = train_cutoffs[-1] + pd.Timedelta(hours=5, minutes=3, seconds=7, microseconds=11)  # rows of all ages
    users = np.arange(0, SMALL.n_users, 5)
    frame = training.candidate_frame(sim.sim, sim.view_rows, cutoff, users, training.future_labels(sim.sim, cutoff))
    store = store_at(sim.view_rows, cutoff)
    cutoff_us = cutoff.value // 1000
    missing = {"user_item": 0, "category": 0}
    for user, group in frame.groupby("user_id"):
        candidates = [
            RecoCandidate(int(i), int(c), float(p))
            for i, c, p in zip(group["item_id"], group["category_id"], group[training.POPULARITY], strict=True)
        ]
        rows = rows_for(store, int(user), candidates)
        missing["user_item"] += sum(r is None for r in rows.user_items)
        missing["category"] += sum(r is None for r in rows.categories.values())
        got = feature_matrix(cutoff_us, candidates, rows)
        np.testing.assert_array_equal(got, group[list(FEATURES)].to_numpy(dtype=np.float64), err_msg=f"user {user}")
    assert missing["user_item"] > 100 and missing["category"] > 0  # the defaults of missing rows were exercised


def test_a_user_and_items_the_store_never_saw_get_the_training_defaults() -> None:
    candidates = [RecoCandidate(1, 2, 7.0), RecoCandidate(3, 2, 0.0)]
    got = feature_matrix(T0, candidates, RecoRows(None, {2: None}, [None, None], [None, None]))
    expected = {name: 0.0 for name in FEATURES}
    expected.update({name: -1.0 for name in FEATURES if name.endswith("_AGE_S")})
    expected["USER_ITEM_SECONDS_SINCE_LAST"] = -1.0
    row = dict(zip(FEATURES, got[0].tolist(), strict=True))
    assert row == expected | {"ITEM_RECENT_VIEWS_7D": 7.0}
    assert got[1, FEATURES.index("ITEM_RECENT_VIEWS_7D")] == 0.0


def test_ages_affinities_and_null_values() -> None:
    user = StoredRow({"USER_NB_EVENTS_1H": 4.0, "USER_NB_EVENTS_24H": 0.0, "USER_NB_EVENTS_7D": 10.0}, T0 - 2_500_000)
    category = StoredRow(
        {"USER_CAT_NB_EVENTS_1H": 1.0, "USER_CAT_NB_EVENTS_24H": 0.0, "USER_CAT_NB_EVENTS_7D": 5.0}, T0
    )
    user_item = StoredRow({"USER_ITEM_NB_EVENTS_7D": 2.0, "USER_ITEM_SECONDS_SINCE_LAST": None}, T0 + 1_000_000)
    item = StoredRow({"ITEM_NB_VIEWS_1H": float("nan"), "ITEM_CTR_1H": 0.25}, T0 - 1)
    got = feature_matrix(T0, [RecoCandidate(9, 1, 3.0)], RecoRows(user, {1: category}, [user_item], [item]))
    row = dict(zip(FEATURES, got[0].tolist(), strict=True))
    assert (row["USER_AGE_S"], row["USER_CAT_AGE_S"], row["USER_ITEM_AGE_S"], row["ITEM_AGE_S"]) == (
        2.5,
        0.0,
        -1.0,  # a row newer than the request: used, with its (negative) age
        1e-6,
    )
    assert (row["USER_CAT_AFFINITY_1H"], row["USER_CAT_AFFINITY_24H"], row["USER_CAT_AFFINITY_7D"]) == (0.25, 0.0, 0.5)
    assert row["USER_ITEM_SECONDS_SINCE_LAST"] == -1.0  # null: training's fillna(-1)
    assert row["ITEM_NB_VIEWS_1H"] == 0.0 and row["ITEM_NB_CLICKS_1H"] == 0.0 and row["ITEM_CTR_1H"] == 0.25


def test_rows_must_match_the_candidates() -> None:
    with pytest.raises(InvalidRequestError, match="do not match 2 candidates"):
        feature_matrix(T0, [RecoCandidate(1, 2, 0.0)] * 2, RecoRows(None, {2: None}, [None], [None]))


# --------------------------------------------------------------------------------------------------- requests


def request(**change: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "request_id": "r-1",
        "user_id": 7,
        "event_time": T0,
        "candidates": [
            {"item_id": 5, "category_id": 1, "retrieval_views_7d": 12.0},
            {"item_id": 6, "category_id": 2, "retrieval_views_7d": 3},
        ],
    }
    return base | change


def test_a_valid_request() -> None:
    query = normalize_reco_request(request(top_k=3, include_features=True))  # front-end keys are ignored
    assert (query.request_id, query.user_id, query.event_time_us) == ("r-1", 7, T0)
    assert query.candidates == (RecoCandidate(5, 1, 12.0), RecoCandidate(6, 2, 3.0))
    when = datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert normalize_reco_request(request(event_time=when)).event_time_us == int(when.timestamp()) * 10**6 + 6
    generated = normalize_reco_request(request(request_id=None)).request_id
    assert len(generated) == 32 and generated != normalize_reco_request(request(request_id=None)).request_id
    views = normalize_reco_request(request(candidates=[{"item_id": 1, "category_id": 0}]))
    assert views.candidates[0].retrieval_views_7d == 0.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"user_id": -1}, "user_id must be an integer within 0..9223372036854775807, got -1"),
        ({"user_id": True}, "user_id must be an integer"),
        ({"event_time": "2024-01-01"}, "event_time must be epoch microseconds or a timezone-aware datetime, got '2024"),
        ({"event_time": datetime(2024, 1, 1)}, "event_time must be timezone-aware"),  # noqa: DTZ001 - the point
        ({"request_id": ""}, "request_id must be a non-empty text"),
        ({"candidates": []}, f"candidates must be a list of 1..{MAX_CANDIDATES} items, got 0 candidates"),
        ({"candidates": None}, "candidates must be a list of 1..2000 items, got None"),
        ({"candidates": [{"item_id": 1}] * (MAX_CANDIDATES + 1)}, "got 2001 candidates"),
        ({"candidates": [{"item_id": 1}]}, r"candidates\[0\].category_id is missing"),
        ({"candidates": [5]}, r"candidates\[0\] must be an object"),
        (
            {"candidates": [{"item_id": 1, "category_id": 2**31}]},
            r"candidates\[0\].category_id must be an integer within 0..2147483647, got 2147483648",
        ),
        ({"candidates": [{"item_id": "x", "category_id": 1}]}, r"candidates\[0\].item_id must be an integer.*'x'"),
        (
            {"candidates": [{"item_id": 1, "category_id": 1, "retrieval_views_7d": float("inf")}]},
            r"candidates\[0\].retrieval_views_7d must be a finite number >= 0, got inf",
        ),
        (
            {"candidates": [{"item_id": 4, "category_id": 1}, {"item_id": 5, "category_id": 1}] * 2},
            r"candidates\[2\].item_id=4 repeats candidates\[0\]",
        ),
    ],
)
def test_an_invalid_request_names_the_field_and_value(change: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        normalize_reco_request(request(**change))
    missing = request()
    del missing["user_id"]
    with pytest.raises(InvalidRequestError, match="user_id is missing"):
        normalize_reco_request(missing)


# --------------------------------------------------------------------------------------------------- ranking


class FakeScorer:
    """Scores a row by a linear function of its features; records what it was given."""

    def __init__(self, weights: Sequence[float]) -> None:
        self.weights = np.asarray(weights, dtype=np.float64)
        self.seen: list[npt.NDArray[np.float64]] = []

    def predict(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        self.seen.append(x)
        return np.asarray(x @ self.weights, dtype=np.float64)


@dataclass
class Slot:
    model: ServingModel | None

    @property
    def current(self) -> ServingModel:
        if self.model is None:
            msg = "none loaded"
            raise ModelUnavailableError(msg)
        return self.model


class FakeReader:
    def __init__(self, rows: RecoRows | Exception) -> None:
        self.rows = rows
        self.calls: list[tuple[int, tuple[RecoCandidate, ...]]] = []

    def read_rows(self, user_id: int, candidates: Sequence[RecoCandidate]) -> RecoRows:
        self.calls.append((user_id, tuple(candidates)))
        if isinstance(self.rows, Exception):
            raise self.rows
        return self.rows


def model(names: Sequence[str], weights: Sequence[float]) -> ServingModel:
    return ServingModel("reco", "3", FakeScorer(weights), tuple(names), 0.0, kind="ranking")  # type: ignore[arg-type]


def test_rank_orders_by_score_ties_in_candidate_order() -> None:
    names = ("ITEM_RECENT_VIEWS_7D", "USER_ITEM_NB_EVENTS_7D")  # not training's order: columns follow the model
    ui = [StoredRow({"USER_ITEM_NB_EVENTS_7D": float(n)}, T0 - k) for k, n in enumerate((0, 5, 0, 1))]
    rows = RecoRows(None, {1: None, 2: None}, ui, [None] * 4)
    reader = FakeReader(rows)
    scorer = RecoScorer(reader, Slot(model(names, [1.0, 10.0])))  # type: ignore[arg-type]
    body = request(
        candidates=[
            {"item_id": 10, "category_id": 1, "retrieval_views_7d": 3.0},  # 3
            {"item_id": 11, "category_id": 2, "retrieval_views_7d": 0.0},  # 50
            {"item_id": 12, "category_id": 1, "retrieval_views_7d": 13.0},  # 13, ties with the last
            {"item_id": 13, "category_id": 1, "retrieval_views_7d": 3.0},  # 13
        ]
    )
    reco = scorer.rank(body)
    assert [(i.item_id, i.score, i.rank) for i in reco.items] == [
        (11, 50.0, 1),
        (12, 13.0, 2),
        (13, 13.0, 3),
        (10, 3.0, 4),
    ]
    assert reco.items[0].features == {"ITEM_RECENT_VIEWS_7D": 0.0, "USER_ITEM_NB_EVENTS_7D": 5.0}
    assert (reco.request_id, reco.user_id, reco.model_name, reco.model_version) == ("r-1", 7, "reco", "3")
    assert reco.feature_event_us == T0  # the newest row read
    assert reco.feature_age_ms == 0.0
    assert set(reco.timings_us) == {"redis_us", "features_us", "model_us", "total_us"}
    assert reader.calls[0][0] == 7 and len(reader.calls[0][1]) == 4


def test_no_ranking_without_features_or_model() -> None:
    rows = RecoRows(None, {1: None, 2: None}, [None, None], [None, None])
    down = RecoScorer(FakeReader(FeaturesUnavailableError("redis down")), Slot(model(FEATURES, [0.0] * 22)))  # type: ignore[arg-type]
    with pytest.raises(FeaturesUnavailableError, match="redis down"):
        down.rank(request())
    empty = FakeReader(rows)
    with pytest.raises(ModelUnavailableError):
        RecoScorer(empty, Slot(None)).rank(request())  # type: ignore[arg-type]
    assert empty.calls == []  # the model is checked before the store is read
    with pytest.raises(InvalidRequestError):
        RecoScorer(empty, Slot(model(FEATURES, [0.0] * 22))).rank(request(user_id="7"))  # type: ignore[arg-type]
    with pytest.raises(ModelUnavailableError, match="needs features the ranker does not build: \\['AMOUNT'\\]"):
        RecoScorer(empty, Slot(model(["AMOUNT"], [1.0]))).rank(request())  # type: ignore[arg-type]
