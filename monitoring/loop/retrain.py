"""Retraining for the closed loop: the champion's own logged inputs joined to the labels known by then, the same
LightGBM fit and ONNX parity gate as `slipstream train`, and the offline gate on the newest mature holdout.

**Where the training data comes from.** Every champion prediction on ``predictions`` carries the exact feature vector
the model was fed (the online engine's point-in-time features, which equal the offline engine's: one definition).
A retrain reads those vectors for the window's events and joins each to its label from ``labels`` — known by the
decision's stream time ``known_by`` (a label that had not arrived by then counts as genuine, as it would in
production). So a retrained model learns from exactly what serving saw: no training/serving skew, no second feature
pipeline, and nothing to recompute. The price: a retrain can only use features the champion's predictions carry
(the same feature set); a new feature set is trained with `slipstream train`. An event scored more than once (a
replay, a champion swap mid-batch) counts once, its first prediction.

**Windows** (event time, from the policy): ``mature_end = known_by - label_maturity``; the holdout is
``[mature_end - valid_days, mature_end)``, training the ``window_days`` before it. The challenger is fit on training
(early stopping and the decision threshold on the holdout, as `train` does); the offline gate compares its metric on
the holdout with the champion's *actual* scores of the same events (from their predictions).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from slipstream.features.definitions.fraud import FRAUD
from slipstream.monitoring.exceptions import MonitoringError
from slipstream.monitoring.figures import micros
from slipstream.monitoring.monitor import TopicReader
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.transport.connection import KafkaLike

DAY_US = 86_400_000_000
Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class RetrainPlan:
    """One retrain: what to read and how to judge it. Times are epoch microseconds of event time."""

    model_name: str
    retrain_id: str
    champion_version: str
    known_by_us: int
    train_from_us: int
    valid_from_us: int
    valid_to_us: int
    metric: str = "average_precision"
    margin: float = 0.0
    refit: bool = False

    @classmethod
    def from_policy(
        cls,
        model_name: str,
        retrain_id: str,
        champion_version: str,
        known_by_us: int,
        *,
        window_days: float,
        valid_days: float,
        maturity_days: float,
        metric: str,
        margin: float,
    ) -> RetrainPlan:
        valid_to = known_by_us - round(maturity_days * DAY_US)
        valid_from = valid_to - round(valid_days * DAY_US)
        train_from = valid_from - round(window_days * DAY_US)
        return cls(
            model_name, retrain_id, champion_version, known_by_us, train_from, valid_from, valid_to, metric, margin
        )

    def window(self) -> tuple[str, str]:
        return (_iso(self.train_from_us), _iso(self.valid_to_us))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "window": list(self.window())}


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, tz=UTC).isoformat(timespec="seconds")


def _read_all(
    bootstrap: KafkaLike, contracts: Contracts, topic: str, keep: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """Every committed record of ``topic`` up to its end now that ``keep`` accepts."""
    out: list[dict[str, Any]] = []
    with TopicReader(bootstrap, contracts, (topic,)) as reader:
        ends = reader.ends()
        while not reader.caught_up(ends):
            records, _failures = reader.poll(20_000, 0.5)
            out.extend(r for r in records if keep(r))
    return out


def training_frame(
    predictions: Iterable[dict[str, Any]], labels: Iterable[dict[str, Any]], plan: RetrainPlan
) -> pd.DataFrame:
    """One row per event of the window: ids, event time, the champion's score, ``label`` as known by the plan's
    ``known_by`` and the model's features, sorted by (event time, event id)."""
    names = FRAUD.model_input
    rows: dict[str, tuple[Any, ...]] = {}
    for p in predictions:
        event_id = str(p["event_id"])
        if event_id in rows:
            continue
        features = p["features"]
        missing = [n for n in names if n not in features]
        if missing:
            msg = f"prediction {p['prediction_id']} lacks features {missing[:3]}: the champion does not log them"
            raise MonitoringError(msg)
        rows[event_id] = (
            event_id,
            int(p["customer_id"]),
            micros(p["event_time"]),
            float(p["score"]),
            *(float(features[n]) for n in names),
        )
    known: dict[str, bool] = {}
    for label in labels:
        if micros(label["event_time"]) <= plan.known_by_us:
            known[str(label["transaction_id"])] = bool(label["is_fraud"])
    frame = pd.DataFrame(list(rows.values()), columns=["event_id", "customer_id", "event_us", "champion_score", *names])
    frame["label"] = np.fromiter((known.get(e, False) for e in frame["event_id"]), dtype=np.int64, count=len(frame))
    frame["event_time"] = pd.to_datetime(frame["event_us"], unit="us", utc=True)
    frame["transaction_id"] = frame["event_id"]
    return frame.sort_values(["event_us", "event_id"], kind="stable").reset_index(drop=True)


def read_window(bootstrap: KafkaLike, contracts: Contracts, plan: RetrainPlan) -> pd.DataFrame:
    """The plan's window of the champion's logged inputs, joined to labels (reads ``predictions`` and ``labels``)."""
    lo, hi = plan.train_from_us, plan.valid_to_us

    def in_window(p: dict[str, Any]) -> bool:
        return (
            str(p["model_name"]) == plan.model_name
            and str(p.get("role", "CHAMPION")) == "CHAMPION"
            and lo <= micros(p["event_time"]) < hi
        )

    predictions = _read_all(bootstrap, contracts, "predictions", in_window)
    labels = _read_all(bootstrap, contracts, "labels", lambda r: lo <= micros(r["tx_event_time"]) < hi)
    return training_frame(predictions, labels, plan)


def split(frame: pd.DataFrame, plan: RetrainPlan) -> tuple[pd.DataFrame, pd.DataFrame]:
    train = frame[frame["event_us"] < plan.valid_from_us]
    valid = frame[frame["event_us"] >= plan.valid_from_us]
    for part, what in ((train, "training"), (valid, "holdout")):
        positives = int(part["label"].sum())
        if positives == 0 or positives == len(part):
            msg = (
                f"the {what} window {_iso(plan.train_from_us if what == 'training' else plan.valid_from_us)}.. holds "
                f"{len(part):,} logged predictions with {positives:,} known frauds: nothing to learn from"
            )
            raise MonitoringError(msg)
    return train.reset_index(drop=True), valid.reset_index(drop=True)


def offline_gate(valid: pd.DataFrame, challenger_scores: Any, plan: RetrainPlan) -> dict[str, Any]:
    """The challenger's and the champion's metric on the same holdout events; ``passed`` when challenger >=
    champion + margin."""
    from slipstream.models.evaluation import fraud_metrics

    challenger = fraud_metrics(valid, challenger_scores)
    champion = fraud_metrics(valid, valid["champion_score"].to_numpy())
    key = "average_precision" if plan.metric == "average_precision" else "card_precision_at_100"
    return {
        "metric": plan.metric,
        "margin": plan.margin,
        "challenger": float(challenger[key]),
        "champion": float(champion[key]),
        "challenger_auc": float(challenger["auc_roc"]),
        "champion_auc": float(champion["auc_roc"]),
        "rows": len(valid),
        "positives": int(valid["label"].sum()),
        "passed": bool(challenger[key] >= champion[key] + plan.margin),
    }


RETRAIN_TAG = "slipstream.retrain_id"


def run_retrain(
    bootstrap: KafkaLike,
    contracts: Contracts,
    registry: Any,
    plan: RetrainPlan,
    *,
    producer: Any = None,
    params: dict[str, Any] | None = None,
    say: Say | None = None,
) -> dict[str, Any]:
    """Read, fit, gate offline, register (parity gate) and tag the version with the retrain id; the result as a dict
    (``version`` is None when the offline gate refused the challenger: nothing is registered then)."""
    from slipstream.models.dataset import data_hash
    from slipstream.models.fraud import predict, train_fraud
    from slipstream.models.publish import register_fraud

    tell = say or (lambda _m: None)
    tell(f"reading the champion's logged inputs {plan.window()[0]} .. {plan.window()[1]}")
    frame = read_window(bootstrap, contracts, plan)
    train, valid = split(frame, plan)
    tell(f"{len(train):,} training rows ({int(train['label'].sum()):,} frauds), {len(valid):,} holdout rows")
    model = train_fraud(train, valid, params=params, progress=tell)
    gate = offline_gate(valid, predict(model, valid), plan)
    result: dict[str, Any] = {"plan": plan.to_dict(), "offline": gate, "version": None, "train_rows": len(train)}
    if not gate["passed"]:
        tell(f"offline gate not passed: {gate['challenger']:.4f} vs champion {gate['champion']:.4f}")
        return result
    final = model
    if plan.refit:
        both = pd.concat([train, valid], ignore_index=True)
        refit_params = {**(params or {}), "n_estimators": model.best_iteration}
        tell(
            f"offline gate passed; refitting on training + holdout ({len(both):,} rows, {model.best_iteration} rounds)"
        )
        final = train_fraud(both, None, params=refit_params)
        final = replace(final, threshold=model.threshold)  # the decision cut chosen on the holdout
    registered, metrics = register_fraud(
        registry,
        plan.model_name,
        final,
        train,
        valid,
        validated=model if plan.refit else None,
        data_window=plan.window(),
        data_hash=data_hash(frame[["event_id", "label", *FRAUD.model_input]]),
        producer=producer,
    )
    registry.client.set_model_version_tag(plan.model_name, registered.version, RETRAIN_TAG, plan.retrain_id)
    tell(f"registered {plan.model_name} version {registered.version}")
    result.update(version=registered.version, metrics=metrics)
    return result


def find_retrained(registry: Any, model_name: str, retrain_id: str) -> str | None:
    """The version a retrain registered, by its tag (a loop restarted after the registration but before recording
    it finds it here instead of training again)."""
    for mv in registry.client.search_model_versions(f"name = '{model_name}'"):
        if (mv.tags or {}).get(RETRAIN_TAG) == retrain_id:
            return str(mv.version)
    return None
