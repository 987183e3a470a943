"""Fraud scoring: a transaction in, a score with its lineage out — the same code for HTTP and for Kafka.

Features are computed exactly as training computed them (``slipstream.features.offline``): each view's windows as of the
transaction's time, the transaction itself included, from the entity's events in the online store. The store holds
each entity's window state (its recent events), not only its last feature row, because a row is as of the entity's
*previous* event: a 1-day count read at the next transaction would still count events that have since left the
window, and miss the transaction itself.

Per batch: one pipelined Redis read for every (view, entity) of every transaction, then the features (pure, no
I/O), then one ONNX Runtime call for the whole batch with the model the slot held when the batch started.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from slipstream.features.base import FeatureSet
from slipstream.features.definitions import FRAUD
from slipstream.features.windows import (
    EntityState,
    compute_view,
    derived_features,
    event_id_int,
    request_features,
    to_micros,
)
from slipstream.serving.base import FraudScore, ModelProvider, ServingModel, StateStore, ViewFreshness
from slipstream.serving.exceptions import InvalidRequestError
from slipstream.serving.recent import RecentEvents

REQUIRED = ("transaction_id", "customer_id", "terminal_id", "amount", "event_time")


def normalize_transaction(record: Mapping[str, Any]) -> dict[str, Any]:
    """A transaction as the scorer needs it: ids as ints, amount a finite float >= 0, event time in epoch µs."""
    missing = [name for name in REQUIRED if name not in record]
    if missing:
        msg = f"transaction is missing {missing!r}: got fields {sorted(record)!r}"
        raise InvalidRequestError(msg)
    out = dict(record)
    for name in ("transaction_id", "customer_id", "terminal_id"):
        value = record[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            msg = f"{name} must be a non-negative integer, got {value!r}"
            raise InvalidRequestError(msg)
    amount = record["amount"]
    if isinstance(amount, bool) or not isinstance(amount, int | float) or not np.isfinite(amount) or amount < 0:
        msg = f"amount must be a finite number >= 0, got {amount!r}"
        raise InvalidRequestError(msg)
    out["amount"] = float(amount)
    when = record["event_time"]
    if isinstance(when, datetime):
        if when.tzinfo is None:
            msg = f"event_time must be timezone-aware, got {when.isoformat()!r}"
            raise InvalidRequestError(msg)
        out["event_time"] = to_micros(when)
    elif isinstance(when, bool) or not isinstance(when, int):
        msg = f"event_time must be a datetime or epoch microseconds, got {when!r}"
        raise InvalidRequestError(msg)
    return out


def compute_features(
    feature_set: FeatureSet, record: Mapping[str, Any], states: Sequence[EntityState | None]
) -> tuple[dict[str, float], tuple[ViewFreshness, ...]]:
    """Every feature of ``feature_set`` for ``record`` (a trigger event, times in µs), from each view's state.

    No I/O; ``states`` are modified (the event is applied to them). ``None``: the store holds nothing for that entity.
    """
    trigger = feature_set.trigger
    t_us = int(record["event_time"])
    eid = event_id_int(record[feature_set.views[0].source(trigger).id_field])
    values: dict[str, float] = {}
    freshness = []
    for view, stored in zip(feature_set.views, states, strict=True):
        state = stored if stored is not None else EntityState()
        newest = newest_known(state, t_us, view.known_by_topics)
        freshness.append(ViewFreshness(view.name, newest, None if newest is None else (t_us - newest) / 1000.0))
        state.apply(view.source(trigger), record, 0, 0, prune=False)
        values.update(compute_view(view, state, t_us, trigger, eid))
    values.update(request_features(feature_set.request, record))
    values.update(derived_features(feature_set, values))
    return values, tuple(freshness)


def stored_states(
    feature_set: FeatureSet,
    record: Mapping[str, Any],
    stored: Sequence[bytes | None],
    recent: RecentEvents | None = None,
) -> list[EntityState | None]:
    """Each view's state for ``record`` from the bytes the store holds; with ``recent`` (the Kafka path), the events
    this worker scored that the store does not show yet are added, and ``record`` is remembered among them."""
    if recent is None:
        return [EntityState.from_bytes(b) if b else None for b in stored]
    trigger = feature_set.trigger
    out: list[EntityState | None] = []
    for view, blob in zip(feature_set.views, stored, strict=True):
        key = _recent_key(view.name, view.entity.join_keys, record)
        out.append(recent.state(key, blob, view.source(trigger)))
        recent.remember(key, record)
    return out


def newest_known(state: EntityState, t_us: int, known_later: Collection[str] | None = None) -> int | None:
    """The newest event time known by ``t_us`` in ``state`` (events after ``t`` — a scorer behind the engine —
    do not make features fresher); None when there is none.

    ``known_later``: the topics whose events become known after their event time (labels); every other ring's
    known-at times are its event times, which are sorted, so one bisect finds the answer. ``None``: assume any ring
    may be such a topic."""
    newest: int | None = None
    for topic, ring in state.rings.items():
        if not ring.known:
            continue
        best: int | None
        if known_later is not None and topic not in known_later:
            at = bisect_right(ring.times, t_us)
            best = ring.times[at - 1] if at else None
        else:
            best = max(ring.known)  # usually nothing is after t: one C-speed pass, no generator
            if best > t_us:
                best = max((k for k in ring.known if k <= t_us), default=None)
        if best is not None and (newest is None or best > newest):
            newest = best
    return newest


def _recent_key(view: str, join_keys: Sequence[str], record: Mapping[str, Any]) -> bytes:
    return "\x1f".join([view, *(str(record[k]) for k in join_keys)]).encode()


class FraudScorer:
    """Scores transactions with the features of ``feature_set`` and the model ``models`` holds."""

    def __init__(
        self,
        store: StateStore,
        models: ModelProvider,
        feature_set: FeatureSet = FRAUD,
        *,
        recent: RecentEvents | None = None,
    ) -> None:
        self.store = store
        self.models = models
        self.feature_set = feature_set
        self.recent = recent
        self._views = feature_set.views

    def score(self, record: Mapping[str, Any]) -> FraudScore:
        return self.score_batch([record])[0]

    def score_batch(self, records: Sequence[Mapping[str, Any]]) -> list[FraudScore]:
        """Score transactions (already validated: see :func:`normalize_transaction`) in order.

        Raises :class:`~serving.exceptions.FeaturesUnavailableError` if the store cannot be read and
        :class:`~serving.exceptions.ModelUnavailableError` if no model is loaded: never a score without either.
        """
        if not records:
            return []
        start = time.perf_counter_ns()
        model = self.models.current  # held to the end of the batch: a swap meanwhile does not affect it
        keys = [(view.name, {k: rec[k] for k in view.entity.join_keys}) for rec in records for view in self._views]
        blobs = self.store.read_states(keys)
        read_done = time.perf_counter_ns()
        n_views = len(self._views)
        rows: list[list[float]] = []
        computed: list[tuple[dict[str, float], tuple[ViewFreshness, ...]]] = []
        for i, rec in enumerate(records):
            states = stored_states(self.feature_set, rec, blobs[i * n_views : (i + 1) * n_views], self.recent)
            values, freshness = compute_features(self.feature_set, rec, states)
            rows.append([values[name] for name in model.feature_names])
            computed.append((values, freshness))
        features_done = time.perf_counter_ns()
        scores = model.scorer.predict(np.asarray(rows, dtype=np.float64))
        done = time.perf_counter_ns()
        timings = {
            "redis_us": (read_done - start) / 1000.0,
            "features_us": (features_done - read_done) / 1000.0,
            "model_us": (done - features_done) / 1000.0,
            "total_us": (done - start) / 1000.0,
        }
        return [
            self._result(rec, model, float(score), freshness, dict(zip(model.feature_names, row, strict=True)), timings)
            for rec, score, row, (_, freshness) in zip(records, scores, rows, computed, strict=True)
        ]

    def _result(
        self,
        record: Mapping[str, Any],
        model: ServingModel,
        score: float,
        freshness: tuple[ViewFreshness, ...],
        features: dict[str, float],
        timings: dict[str, float],
    ) -> FraudScore:
        return FraudScore(
            event_id=str(record["transaction_id"]),
            customer_id=int(record["customer_id"]),
            terminal_id=int(record["terminal_id"]),
            event_time_us=int(record["event_time"]),
            score=score,
            decision=score >= model.threshold,
            threshold=model.threshold,
            model_name=model.name,
            model_version=model.version,
            features=features,
            freshness=freshness,
            timings_us=timings,
        )
