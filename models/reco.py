"""The recommendation ranker: LightGBM lambdarank over the ``RECO`` features, scored against the simulator's truth.

Protocol (:func:`fit_reco`, :func:`evaluate_reco`), over any clickstream with its item catalogue
(:class:`InteractionLog`; the simulator's ``RecoSimulation`` is one): cut off at the start of the last
:data:`EVAL_DAYS` days. A deterministic ~30 % of the users with a click after the cut-off are held out.
For a (user, cut-off) the retrieval stage proposes the :data:`TOP_N` items with the most views in the 7 days before
the cut-off plus the user's own items of the 14 days before it (at most :data:`OWN_ITEMS`, the latest). Features are
point in time: per candidate, the latest view row at or before the cut-off of ``user_activity``,
``user_category_affinity`` (user, item's category), ``user_item_recency`` and ``item_popularity`` (missing: 0, and
-1 for the recency), the derived affinity ratios, each row's age in seconds at the cut-off (the online store's rows
go stale: their windows were counted at the row's event, not at the cut-off) and the retrieval popularity itself.
The label is the graded future relevance within the horizon: 2 for an add-to-cart or purchase, 1 for a click, else 0.

Training frames use the same construction at :data:`TRAIN_OFFSETS` days before the final cut-off, for the users not
held out, with labels from the :data:`EVAL_DAYS` days after each training cut-off (so never past the final cut-off).
The popularity baseline ranks the same candidates by the retrieval popularity.

Metrics: :func:`ndcg_at_k` (gain ``2**g - 1``, discount ``log2(rank + 1)``; the ideal DCG is over *all* the user's
relevant items, so an item the retrieval missed costs both rankers alike) and :func:`recall_at_k` (relevant items in
the top ``k`` over ``min(#relevant, k)``, so a perfect top ``k`` scores 1). Ties in score keep the candidate order
(item id). Determinism: one thread, ``deterministic``, ``force_row_wise`` and every seed fixed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pandas as pd

from slipstream.features.definitions.reco import AFFINITY, FEATURES, POPULARITY, RANKER_VIEWS, RECO, WINDOWS
from slipstream.features.offline import EVENT_TIMESTAMP, compute_offline, latest_view_rows
from slipstream.models.exceptions import InvalidInputError, MissingFeaturesError
from slipstream.models.lgbm import deterministic_params, with_rounds

F64 = npt.NDArray[np.float64]
DAY: Final = pd.Timedelta(days=1)
EVAL_DAYS: Final = 7
TRAIN_OFFSETS: Final = (14, 7)  # training cut-offs, in days before the final one
HELD_OUT_SHARE: Final = 0.3
TOP_N: Final = 100
OWN_ITEMS: Final = 50
POPULARITY_DAYS: Final = 7
OWN_DAYS: Final = 14
QUERY: Final = ("cutoff", "user_id")
GRADES: Final[Mapping[str, int]] = {"CLICK": 1, "ADD_TO_CART": 2, "PURCHASE": 2}
DEFAULT_PARAMS: Final[Mapping[str, Any]] = {
    "num_leaves": 31,
    "learning_rate": 0.05,
    "min_data_in_leaf": 50,
    "n_estimators": 200,
    "lambdarank_truncation_level": 20,
}


class LogSpan(Protocol):
    """The span a clickstream covers: ``days`` days from midnight UTC of ``start``, users ``0 .. n_users - 1``."""

    @property
    def start(self) -> str: ...
    @property
    def days(self) -> int: ...
    @property
    def n_users(self) -> int: ...


class InteractionLog(Protocol):
    """What the protocol reads of a clickstream: its events (the ``interactions`` contract's columns, in event-time
    order), its item catalogue (``category_id`` indexed by ``item_id``) and its span."""

    @property
    def config(self) -> LogSpan: ...
    @property
    def events(self) -> pd.DataFrame: ...
    @property
    def items(self) -> pd.DataFrame: ...


@dataclass(frozen=True)
class RecoModel:
    """A trained lambdarank booster, the feature order it reads and the parameters that made it."""

    booster: lgb.Booster
    feature_names: tuple[str, ...]
    params: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------- metrics


def _ranked(scores: npt.ArrayLike, gains: npt.ArrayLike) -> tuple[F64, F64]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    g = np.asarray(gains, dtype=np.float64).ravel()
    if len(s) != len(g):
        msg = f"scores and gains differ in length: {len(s)} != {len(g)}"
        raise InvalidInputError(msg)
    if (g < 0).any() or not np.isfinite(g).all():
        msg = f"gains must be finite and >= 0, got {sorted(np.unique(g).tolist())[:10]}"
        raise InvalidInputError(msg)
    return s, g[np.argsort(-s, kind="stable")]


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        msg = f"k must be an integer >= 1, got {k!r}"
        raise InvalidInputError(msg)


def dcg_at_k(ranked_gains: npt.ArrayLike, k: int = 10) -> float:
    """``sum((2**g - 1) / log2(rank + 1))`` over the first ``k`` gains, taken in the order given (rank from 1)."""
    _check_k(k)
    g = np.asarray(ranked_gains, dtype=np.float64).ravel()[:k]
    return float(((2.0**g - 1.0) / np.log2(np.arange(len(g)) + 2.0)).sum())


def ndcg_at_k(scores: npt.ArrayLike, gains: npt.ArrayLike, k: int = 10, ideal: npt.ArrayLike | None = None) -> float:
    """DCG@k of the items ranked by ``scores`` (descending; ties keep the given order) over the ideal DCG@k.

    ``ideal``: the gains of every relevant item (some may not be among the ranked ones); default ``gains``.
    """
    _, ranked = _ranked(scores, gains)
    best = np.sort(np.asarray(gains if ideal is None else ideal, dtype=np.float64).ravel())[::-1]
    norm = dcg_at_k(best, k)
    if norm <= 0:
        msg = f"ndcg needs a relevant item (a gain > 0), got ideal gains {best[:10].tolist()}"
        raise InvalidInputError(msg)
    return dcg_at_k(ranked, k) / norm


def recall_at_k(scores: npt.ArrayLike, gains: npt.ArrayLike, k: int = 10, n_relevant: int | None = None) -> float:
    """Relevant items (gain > 0) in the top ``k`` by ``scores`` over ``min(n_relevant, k)``.

    ``n_relevant``: how many relevant items the user has in all (some may not be ranked); default those in ``gains``.
    """
    _check_k(k)
    _, ranked = _ranked(scores, gains)
    total = int((ranked > 0).sum()) if n_relevant is None else n_relevant
    if total < max(int((ranked > 0).sum()), 1):
        msg = f"n_relevant must be >= 1 and >= the relevant items ranked ({int((ranked > 0).sum())}), got {total!r}"
        raise InvalidInputError(msg)
    return float((ranked[:k] > 0).sum()) / min(total, k)


# --------------------------------------------------------------------------------------------------- frames


def cutoffs(config: LogSpan) -> tuple[pd.Timestamp, list[pd.Timestamp]]:
    """The final cut-off (start of the last :data:`EVAL_DAYS` days) and the training cut-offs before it."""
    if config.days <= EVAL_DAYS + max(TRAIN_OFFSETS):
        msg = f"the reco protocol needs more than {EVAL_DAYS + max(TRAIN_OFFSETS)} days, got days={config.days!r}"
        raise InvalidInputError(msg)
    final = pd.Timestamp(config.start, tz="UTC") + (config.days - EVAL_DAYS) * DAY
    return final, [final - offset * DAY for offset in TRAIN_OFFSETS]


def held_out_users(sim: InteractionLog, cutoff: pd.Timestamp, *, seed: int = 42) -> npt.NDArray[np.int64]:
    """A deterministic :data:`HELD_OUT_SHARE` of the users with a click at or after ``cutoff``, sorted."""
    events = sim.events
    clicked = np.unique(events.loc[(events["event_time"] >= cutoff) & (events["action"] == "CLICK"), "user_id"])
    chosen = np.random.Generator(np.random.PCG64(seed)).permutation(clicked)[: round(HELD_OUT_SHARE * len(clicked))]
    out: npt.NDArray[np.int64] = np.sort(chosen).astype(np.int64)
    return out


def future_labels(sim: InteractionLog, cutoff: pd.Timestamp, horizon: pd.Timedelta | None = None) -> pd.DataFrame:
    """(user_id, item_id, label): the best grade (:data:`GRADES`) of each pair in ``[cutoff, cutoff + horizon)``."""
    events = sim.events
    mask = (events["event_time"] >= cutoff) & events["action"].isin(list(GRADES))
    if horizon is not None:
        mask &= events["event_time"] < cutoff + horizon
    future = events.loc[mask, ["user_id", "item_id", "action"]]
    future = future.assign(label=future["action"].map(GRADES).astype(np.int64))
    best: pd.DataFrame = future.groupby(["user_id", "item_id"], as_index=False).agg(label=("label", "max"))
    return best


def candidate_frame(
    sim: InteractionLog,
    view_rows: Mapping[str, pd.DataFrame],
    cutoff: pd.Timestamp,
    users: npt.ArrayLike,
    labels: pd.DataFrame,
) -> pd.DataFrame:
    """Retrieval candidates of ``users`` at ``cutoff`` with their point-in-time features and ``labels`` (0 if absent).

    ``view_rows`` are :attr:`OfflineFeatures.view_rows` of ``RECO``; only rows at or before the cut-off are read.
    Sorted by (user_id, item_id).
    """
    events = sim.events
    past = events[events["event_time"] < cutoff]
    recent = past[(past["event_time"] >= cutoff - POPULARITY_DAYS * DAY) & (past["action"] == "VIEW")]
    popularity = recent["item_id"].value_counts().rename(POPULARITY)
    top = popularity.sort_index(kind="stable").sort_values(ascending=False, kind="stable").index[:TOP_N]
    user_ids = np.asarray(users, dtype=np.int64)
    pairs = pd.DataFrame({"user_id": np.repeat(user_ids, len(top)), "item_id": np.tile(top.to_numpy(), len(user_ids))})
    own = past[(past["event_time"] >= cutoff - OWN_DAYS * DAY) & past["user_id"].isin(user_ids)]
    own = own.drop_duplicates(["user_id", "item_id"], keep="last").groupby("user_id").tail(OWN_ITEMS)
    frame = pd.concat([pairs, own[["user_id", "item_id"]]], ignore_index=True).drop_duplicates()
    frame = frame.sort_values(["user_id", "item_id"], kind="stable").reset_index(drop=True)
    frame["category_id"] = sim.items["category_id"].to_numpy()[frame["item_id"].to_numpy()]
    frame[POPULARITY] = frame["item_id"].map(popularity).fillna(0.0).to_numpy(dtype=np.float64)
    for view in RANKER_VIEWS:
        keys, columns, extra, age = view.join_keys, view.columns, view.extra, view.age
        rows = view_rows[view.name]
        latest = latest_view_rows({view.name: rows[rows[EVENT_TIMESTAMP] <= cutoff]})[view.name]
        latest = latest.assign(**{age: (cutoff - latest[EVENT_TIMESTAMP]).dt.total_seconds()})
        latest = latest[[*keys, *columns, *extra, age]].astype({k: frame[k].dtype for k in keys})
        frame = frame.merge(latest, on=list(keys), how="left", validate="many_to_one")
        frame[list(columns)] = frame[list(columns)].fillna(0.0)
        frame[age] = frame[age].fillna(-1.0)
        for name, default in zip(extra, view.defaults, strict=True):
            frame[name] = frame[name].fillna(default)
    for k, name in zip(WINDOWS, AFFINITY, strict=True):
        user = frame[f"USER_NB_EVENTS_{k}"].to_numpy(dtype=np.float64)
        category = frame[f"USER_CAT_NB_EVENTS_{k}"].to_numpy(dtype=np.float64)
        frame[name] = np.divide(category, user, out=np.zeros(len(frame)), where=user != 0)
    frame = frame.merge(labels, on=["user_id", "item_id"], how="left")
    frame["label"] = frame["label"].fillna(0).astype(np.int64)
    frame.insert(0, "cutoff", cutoff)
    return frame


def training_frame(sim: InteractionLog, view_rows: Mapping[str, pd.DataFrame], *, seed: int = 42) -> pd.DataFrame:
    """Candidates at every training cut-off for the users not held out, keeping only queries with a positive."""
    final, train_cutoffs = cutoffs(sim.config)
    held = held_out_users(sim, final, seed=seed)
    users = np.setdiff1d(np.arange(sim.config.n_users, dtype=np.int64), held)
    frames = []
    for cutoff in train_cutoffs:
        labels = future_labels(sim, cutoff, EVAL_DAYS * DAY)
        active = np.intersect1d(users, labels["user_id"].to_numpy())
        frame = candidate_frame(sim, view_rows, cutoff, active, labels)
        positive = frame.groupby("user_id")["label"].transform("max") > 0
        frames.append(frame[positive])
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------------------------------- model


def _matrix(frame: pd.DataFrame, names: Sequence[str]) -> F64:
    missing = [n for n in names if n not in frame.columns]
    if missing:
        msg = f"frame lacks model features {missing}"
        raise MissingFeaturesError(msg)
    return frame.loc[:, list(names)].to_numpy(dtype=np.float64)


def _fixed_params(seed: int) -> dict[str, Any]:
    return {
        "objective": "lambdarank",
        "metric": "ndcg",
        "eval_at": [10],
        **deterministic_params(seed),
    }


def train_ranker(train_frame: pd.DataFrame, *, seed: int = 42, params: Mapping[str, Any] | None = None) -> RecoModel:
    """Fit the lambdarank ranker on ``train_frame`` (``cutoff``, ``user_id``, ``label`` 0-2 and :data:`FEATURES`).

    A query is one (cutoff, user); rows are sorted by (cutoff, user_id, item_id) first. ``params`` overrides
    :data:`DEFAULT_PARAMS` (``n_estimators`` = rounds).
    """
    missing = [c for c in (*QUERY, "label") if c not in train_frame.columns]
    if missing:
        msg = f"train frame lacks columns {missing}"
        raise InvalidInputError(msg)
    if train_frame.empty:
        msg = "train frame is empty"
        raise InvalidInputError(msg)
    order = [*QUERY, "item_id"] if "item_id" in train_frame.columns else list(QUERY)
    frame = train_frame.sort_values(order, kind="stable")  # a canonical row order: the same trees for any input order
    y = frame["label"].to_numpy()
    if not np.isin(y, (0, 1, 2)).all():
        msg = f"labels must be 0, 1 or 2, got {sorted(pd.unique(y).tolist())[:10]}"
        raise InvalidInputError(msg)
    chosen, rounds = with_rounds(DEFAULT_PARAMS, params)
    groups = frame.groupby(list(QUERY), sort=False).size().to_numpy()
    names = tuple(FEATURES)
    data = lgb.Dataset(_matrix(frame, names), label=y, group=groups, feature_name=list(names), free_raw_data=True)
    booster = lgb.train({**chosen, **_fixed_params(seed)}, data, num_boost_round=rounds)
    return RecoModel(booster, names, {**chosen, "n_estimators": rounds, **_fixed_params(seed)})


def predict_scores(model: RecoModel, frame: pd.DataFrame) -> F64:
    """Ranking scores for every row of ``frame`` (higher = earlier), read in the model's feature order."""
    return np.asarray(model.booster.predict(_matrix(frame, model.feature_names)), dtype=np.float64)


# --------------------------------------------------------------------------------------------------- protocol


def _mean_metrics(frame: pd.DataFrame, score: str, truth: pd.DataFrame, k: int) -> dict[str, float]:
    ndcg, recall = [], []
    for user, group in frame.groupby("user_id", sort=True):
        relevant = truth.loc[truth["user_id"] == user, "label"].to_numpy()
        gains, scores = group["label"].to_numpy(), group[score].to_numpy()
        ndcg.append(ndcg_at_k(scores, gains, k, ideal=relevant))
        recall.append(recall_at_k(scores, gains, k, n_relevant=len(relevant)))
    return {f"ndcg_at_{k}": float(np.mean(ndcg)), f"recall_at_{k}": float(np.mean(recall))}


@dataclass(frozen=True)
class RecoFit:
    """What :func:`fit_reco` made: the ranker, its training frame, the held-out users' candidates at the final cut-off
    (``test``, with the ranker's ``score``), every future relevance (``truth``), the cut-off, the log's first and last
    event day (UTC) and the protocol's report."""

    model: RecoModel
    train: pd.DataFrame
    test: pd.DataFrame
    truth: pd.DataFrame
    cutoff: pd.Timestamp
    data_window: tuple[str, str]
    report: dict[str, Any]


def fit_reco(
    sim: InteractionLog,
    *,
    k: int = 10,
    seed: int = 42,
    params: Mapping[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
    view_rows: Mapping[str, pd.DataFrame] | None = None,
) -> RecoFit:
    """Run the protocol of the module docstring on ``sim`` and keep what it made: the ranker (trained once) scored
    with the popularity baseline on the held-out users. ``view_rows``: ``sim``'s offline view rows of ``RECO`` if the
    caller has them (computed otherwise).

    The report holds ``ndcg_at_{k}``, ``recall_at_{k}`` (ranker), ``popularity`` (the same two for the baseline),
    ``users`` (held out), ``candidates_per_user`` (mean), ``train_rows``, ``train_queries`` and ``seconds``.
    """
    _check_k(k)
    say = progress or (lambda _message: None)
    started = time.perf_counter()
    final, _ = cutoffs(sim.config)
    say(f"{len(sim.events):,} events")
    if view_rows is None:
        view_rows = compute_offline(RECO, {"interactions": sim.events}).view_rows
    train = training_frame(sim, view_rows, seed=seed)
    say(f"training frame: {len(train):,} rows, {train.groupby(list(QUERY)).ngroups:,} queries")
    model = train_ranker(train, seed=seed, params=params)
    held = held_out_users(sim, final, seed=seed)
    truth = future_labels(sim, final)
    test = candidate_frame(sim, view_rows, final, held, truth)
    test["score"] = predict_scores(model, test)
    ranker = _mean_metrics(test, "score", truth, k)
    baseline = _mean_metrics(test, POPULARITY, truth, k)
    say(f"ranker {ranker}, popularity {baseline}")
    report = {
        **ranker,
        "popularity": baseline,
        "users": len(held),
        "candidates_per_user": float(len(test) / max(len(held), 1)),
        "train_rows": len(train),
        "train_queries": int(train.groupby(list(QUERY)).ngroups),
        "seconds": round(time.perf_counter() - started, 2),
    }
    window = (str(sim.events["event_time"].min().date()), str(sim.events["event_time"].max().date()))
    return RecoFit(model, train, test, truth, final, window, report)


def evaluate_reco(
    sim: InteractionLog,
    *,
    k: int = 10,
    seed: int = 42,
    params: Mapping[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
    view_rows: Mapping[str, pd.DataFrame] | None = None,
) -> dict[str, Any]:
    """The report of :func:`fit_reco` alone."""
    return fit_reco(sim, k=k, seed=seed, params=params, progress=progress, view_rows=view_rows).report


__all__ = [
    "DEFAULT_PARAMS",
    "FEATURES",
    "InteractionLog",
    "LogSpan",
    "RecoFit",
    "RecoModel",
    "candidate_frame",
    "cutoffs",
    "dcg_at_k",
    "evaluate_reco",
    "fit_reco",
    "future_labels",
    "held_out_users",
    "ndcg_at_k",
    "predict_scores",
    "recall_at_k",
    "train_ranker",
    "training_frame",
]
