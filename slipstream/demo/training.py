"""The model half of the story, as `slipstream train fraud --promote` tells it, on just the events its windows need:
offline features backfilled (Feast file sources), LightGBM trained and validated, exported to ONNX behind the parity
gate, registered in MLflow and promoted to champion — with REGISTERED and PROMOTED on this run's ``model-events``.
Then the same for the recommendations ranker, as `slipstream train reco --promote` tells it (the same two calls), and
its features at the cut-off materialized into this run's online store (:mod:`slipstream.demo.recommend`). Each model
gets a challenger beside its champion (CHALLENGER_SET on ``model-events``) for `slipstream shadow` to compare: the
fraud recipe on the recent half of the training window, the ranker's with a quarter of the boosting rounds."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from slipstream.app import Slipstream
from slipstream.demo.timeline import LABEL_FIELDS, REACH_US, TX_FIELDS, Timeline, day_micros, us_of
from slipstream.features.definitions import FRAUD
from slipstream.schemas.transport import EventProducer

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd

    from slipstream.demo.recommend import RecoQuery
    from slipstream.models.reco import RecoFit, RecoModel


@dataclass(frozen=True, slots=True)
class Challenger:
    """The version the demo sets beside the champion: the same recipe on the recent half of the training window."""

    version: str
    threshold: float
    metrics: dict[str, float]
    train_window: tuple[str, str]

    def story(self, name: str) -> str:
        return (
            f"{name} v{self.version} registered and set as challenger (CHALLENGER_SET on model-events): trained on "
            f"{self.train_window[0]}..{self.train_window[1]} only, validation AP "
            f"{self.metrics.get('average_precision', float('nan')):.3f}, threshold {self.threshold:.3f}; "
            f"`slipstream shadow` scores it on every champion prediction's inputs"
        )


@dataclass(frozen=True, slots=True)
class Champion:
    version: str
    threshold: float
    metrics: dict[str, float]
    parity_max_abs_diff: float
    parity_rows: int
    train_rows: int
    train_frauds: int
    backfill_vectors: int
    challenger: Challenger | None = None

    def story(self, name: str, offline_dir: object) -> str:
        """What happened, in a sentence."""
        return (
            f"{name} v{self.version} registered in MLflow and promoted to champion (REGISTERED, PROMOTED on "
            f"model-events): trained on {self.train_rows:,} transactions, validation AP "
            f"{self.metrics.get('average_precision', float('nan')):.3f}, threshold {self.threshold:.3f}, ONNX parity "
            f"max |diff| {self.parity_max_abs_diff:.1g}; {self.backfill_vectors:,} offline feature vectors in "
            f"{offline_dir}"
        )


def train_champion(
    app: Slipstream,
    producer: EventProducer,
    tx: pd.DataFrame,
    labels: pd.DataFrame,
    timeline: Timeline,
    *,
    with_challenger: bool = True,
) -> Champion:
    """What `slipstream train fraud --promote` does, on the events the windows need: backfill the offline features
    (Feast file sources), train LightGBM, register it behind the ONNX parity gate, promote it (model-events); then,
    ``with_challenger``, a challenger beside it (the drills start without one: their loop makes its own)."""
    import pandas as pd

    from slipstream.features.offline import compute_offline, write_offline
    from slipstream.models.dataset import data_hash, fraud_training_frame, window
    from slipstream.models.fraud import train_fraud
    from slipstream.models.publish import register_fraud

    for noisy in ("mlflow", "alembic"):  # "creating initial MLflow database tables" and such
        logging.getLogger(noisy).setLevel(logging.WARNING)
    lo = day_micros(timeline.train[0]) - REACH_US  # every window of the first training day is full
    hi = day_micros(timeline.valid[1])
    t, lt, ltx = us_of(tx["event_time"]), us_of(labels["event_time"]), us_of(labels["tx_event_time"])
    tx_part = tx.loc[(t >= lo) & (t < hi)].reset_index(drop=True)
    label_part = labels.loc[(ltx >= lo) & (lt < hi)].reset_index(drop=True)
    backfill = compute_offline(
        FRAUD, {"transactions": tx_part[list(TX_FIELDS)], "labels": label_part[list(LABEL_FIELDS)]}
    )
    write_offline(backfill, app.settings.offline_dir)
    frame = fraud_training_frame(tx_part, label_part)
    train_set, valid_set = window(frame, *timeline.train), window(frame, *timeline.valid)
    model = train_fraud(train_set, valid_set)
    registry, name = app.model_registry, app.settings.fraud_model
    registered, metrics = register_fraud(
        registry,
        name,
        model,
        train_set,
        valid_set,
        data_window=(timeline.train[0], timeline.valid[1]),
        data_hash=data_hash(frame),
        producer=producer,
    )
    registry.promote(name, registered.version, producer=producer)
    champion = Champion(
        registered.version,
        model.threshold,
        metrics,
        registered.parity.max_abs_diff,
        registered.parity.n,
        len(train_set),
        int(train_set["label"].sum()),
        len(backfill.vectors),
    )
    if not with_challenger:
        # the registry outlives runs: a challenger an earlier run left would be shadowed beside this champion
        if registry.alias_version(name, "challenger") is not None:
            registry.remove_challenger(name, "challenger", producer)
        return champion
    # The challenger: the same recipe on the recent half of the training window (another window, as a retrain on
    # fresher data would be), registered behind the same gate and shadowed, never served.
    start, end = timeline.train
    middle = (pd.Timestamp(start) + (pd.Timestamp(end) - pd.Timestamp(start)) / 2).date().isoformat()
    recent = window(frame, middle, end)
    rival = train_fraud(recent, valid_set)
    rival_registered, rival_metrics = register_fraud(
        registry,
        name,
        rival,
        recent,
        valid_set,
        data_window=(middle, timeline.valid[1]),
        data_hash=data_hash(frame),
        producer=producer,
    )
    registry.set_challenger(name, rival_registered.version, producer=producer)
    return replace(
        champion, challenger=Challenger(rival_registered.version, rival.threshold, rival_metrics, (middle, end))
    )


RECO_CHALLENGER_ROUNDS = 50  # the champion's recipe has 200: a quarter of the training time (~2 s instead of ~8 s)


@dataclass(frozen=True, slots=True)
class RecoChallenger:
    """The ranker the demo sets beside the reco champion: the same recipe, training frame and seed, fewer rounds."""

    version: str
    rounds: int
    metrics: dict[str, float]

    def story(self, name: str) -> str:
        return (
            f"{name} v{self.version} registered and set as challenger: the same LambdaRank recipe with {self.rounds} "
            f"boosting rounds, held-out NDCG@10 {self.metrics.get('ndcg_at_10', float('nan')):.3f}; requests also go "
            f"to recommendation-requests (score-stream --reco), and `slipstream shadow` re-ranks every champion list"
        )


def held_out_report(fit: RecoFit, model: RecoModel, k: int = 10) -> dict[str, Any]:
    """``fit``'s report with the ranker's held-out figures replaced by ``model``'s: mean NDCG@k and recall@k over the
    held-out users' candidates at the cut-off, every future relevant item counted (the protocol's measures)."""
    import numpy as np

    from slipstream.models.reco import ndcg_at_k, predict_scores, recall_at_k

    scores = predict_scores(model, fit.test)
    truth_users, truth_labels = fit.truth["user_id"].to_numpy(), fit.truth["label"].to_numpy()
    relevant = {int(u): truth_labels[rows] for u, rows in _indices(truth_users).items()}
    ndcg, recall = [], []
    labels = fit.test["label"].to_numpy()
    for user, rows in sorted(_indices(fit.test["user_id"].to_numpy()).items()):
        ideal = relevant.get(user, np.empty(0))
        ndcg.append(ndcg_at_k(scores[rows], labels[rows], k, ideal=ideal))
        recall.append(recall_at_k(scores[rows], labels[rows], k, n_relevant=len(ideal)))
    return {**fit.report, f"ndcg_at_{k}": float(np.mean(ndcg)), f"recall_at_{k}": float(np.mean(recall))}


def _indices(keys: npt.NDArray[Any]) -> dict[int, npt.NDArray[np.intp]]:
    """Row positions per distinct key, in row order."""
    import numpy as np

    order = np.argsort(keys, kind="stable")
    distinct, starts = np.unique(keys[order], return_index=True)
    return {int(k): rows for k, rows in zip(distinct, np.split(order, starts[1:]), strict=True)}


@dataclass(frozen=True, slots=True)
class RecoChampion:
    version: str
    metrics: dict[str, float]
    parity_max_abs_diff: float
    parity_rows: int
    events: int
    train_rows: int
    cutoff: str
    materialized: int
    queries: list[RecoQuery]
    challenger: RecoChallenger | None = None

    def story(self, name: str) -> str:
        """What happened, in a sentence."""
        m = self.metrics
        return (
            f"{name} v{self.version} (LambdaRank) registered behind the ONNX parity gate (max |diff| "
            f"{self.parity_max_abs_diff:.1g} on {self.parity_rows:,} rows) and promoted to champion: trained on "
            f"{self.train_rows:,} candidate rows of {self.events:,} simulated clicks, held-out NDCG@10 "
            f"{m.get('ndcg_at_10', float('nan')):.3f} (popularity {m.get('popularity_ndcg_at_10', float('nan')):.3f});"
            f" {self.materialized:,} feature rows at the cut-off {self.cutoff[:16]} materialized into the online "
            f"store; {len(self.queries):,} users' requests to send"
        )


def train_reco_champion(app: Slipstream, producer: EventProducer, project: str) -> RecoChampion:
    """What `slipstream train reco --promote` does — the protocol on the simulated clickstream, the ranker registered
    behind the ONNX parity gate and promoted (model-events) — then a challenger (the same recipe, fewer rounds) set
    beside it, the clickstream's features at the cut-off into ``project``'s online store and the held-out users'
    requests, for the scorers to rank live."""
    import dataclasses

    from slipstream.demo.recommend import materialize, reco_queries
    from slipstream.features.definitions import RECO
    from slipstream.features.offline import compute_offline
    from slipstream.models.publish import register_reco
    from slipstream.models.reco import fit_reco, train_ranker
    from slipstream.streams.simulate.reco import RecoSimConfig, simulate_interactions

    simulation = simulate_interactions(RecoSimConfig())
    view_rows = compute_offline(RECO, {"interactions": simulation.events}).view_rows
    fit = fit_reco(simulation, view_rows=view_rows)
    registry, name = app.model_registry, app.settings.reco_model
    registered, metrics = register_reco(registry, name, fit, producer=producer)
    registry.promote(name, registered.version, producer=producer)
    rival = train_ranker(fit.train, params={"n_estimators": RECO_CHALLENGER_ROUNDS})
    rival_fit = dataclasses.replace(fit, model=rival, report=held_out_report(fit, rival))
    rival_registered, rival_metrics = register_reco(registry, name, rival_fit, producer=producer)
    registry.set_challenger(name, rival_registered.version, producer=producer)
    written = materialize(app.redis_url, project, view_rows, fit.cutoff)
    return RecoChampion(
        registered.version,
        metrics,
        registered.parity.max_abs_diff,
        registered.parity.n,
        len(simulation.events),
        len(fit.train),
        fit.cutoff.isoformat(),
        written,
        reco_queries(fit),
        RecoChallenger(rival_registered.version, RECO_CHALLENGER_ROUNDS, rival_metrics),
    )
