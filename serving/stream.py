"""The Kafka front end (``slipstream score-stream``): every transaction scored as it arrives, onto ``predictions``.

Design (see ``docs/architecture.md``, "Scoring"): the scorer reads the raw ``transactions`` topic, not the engine's
``feature-log``. Both are exact, but the feature log is two hops further down the pipeline (the engine's two stages
and the repartition topic between them), and its terminal stage waits for the labels watermark; reading the raw
topic and the entity state in Redis is one Kafka hop and one Redis round trip. Exactness on the fast path comes from
two things: the features are computed from each entity's *events* as of the transaction's time (so a scorer
running ahead of or behind the engine gets the same windows), and :class:`~serving.recent.RecentEvents` adds the
transactions this worker scored that the engine has not yet written (a card used twice within milliseconds).

Delivery: at least once, idempotent outputs. Offsets are committed only after the predictions of everything
consumed so far are acknowledged; a replay after a crash re-sends the same ``prediction_id`` (event id + model
version), which consumers de-duplicate on. Transactions are keyed by customer, so workers scale out with the
topic's partitions, and a customer's transactions are always scored by one worker, in order.

When Redis cannot be read the batch is retried (with back-off) until it can: a prediction is never made from
missing features, and nothing is skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from schemas.dead_letter import RawMessage
from schemas.exceptions import SlipstreamError
from schemas.transport import EventConsumer, EventProducer
from schemas.transport.consumer import ConsumedEvent
from serving.base import FraudScore
from serving.exceptions import FeaturesUnavailableError, InvalidRequestError, ModelUnavailableError
from serving.fraud import normalize_transaction
from serving.service import ScoringService

log = logging.getLogger(__name__)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class StreamStats:
    consumed: int = 0
    scored: int = 0
    flagged: int = 0
    invalid: int = 0
    retries: int = 0
    batches: int = 0
    last_model_version: str = ""
    started: float = field(default_factory=time.monotonic)


def prediction_record(score: FraudScore, received_us: int, scored_us: int, offset: int | None) -> dict[str, Any]:
    """The ``predictions`` record of one score: everything a downstream service or a shadow model needs."""
    return {
        "prediction_id": score.prediction_id,
        "event_id": score.event_id,
        "customer_id": score.customer_id,
        "terminal_id": score.terminal_id,
        "model_name": score.model_name,
        "model_version": score.model_version,
        "score": score.score,
        "decision": score.decision,
        "threshold": score.threshold,
        "features": score.features,
        "feature_event_time": score.feature_event_us,
        "feature_age_ms": score.feature_age_ms,
        "feature_freshness": {f.view: f.age_ms for f in score.freshness if f.age_ms is not None},
        "timings_us": score.timings_us,
        "event_time": score.event_time_us,
        "received_at": received_us,
        "scored_at": scored_us,
        "role": "CHAMPION",
        "source_offset": offset,
    }


class ScoreStream:
    """Consumes ``transactions``, scores each batch with ``service.fraud``, produces to ``predictions``."""

    def __init__(
        self,
        service: ScoringService,
        consumer: EventConsumer,
        producer: EventProducer,
        *,
        commit_interval_s: float = 0.2,
        max_batch: int = 500,
        on_batch: Callable[[StreamStats], None] | None = None,
    ) -> None:
        self.service = service
        self.consumer = consumer
        self.producer = producer
        self.commit_interval_s = commit_interval_s
        self.max_batch = max_batch
        self.stats = StreamStats()
        self._on_batch = on_batch
        self._last_commit = time.monotonic()
        self._uncommitted = False
        self._abandoned = False

    def run(self, stop: threading.Event, *, until_idle_s: float | None = None) -> StreamStats:
        """Score until ``stop`` is set (or nothing arrived for ``until_idle_s``); commit what is done, then return."""
        idle_since = time.monotonic()
        try:
            while not stop.is_set():
                got = self.step(stop)
                now = time.monotonic()
                if got:
                    idle_since = now
                elif until_idle_s is not None and now - idle_since >= until_idle_s:
                    break
        finally:
            self.commit()
        return self.stats

    def step(self, stop: threading.Event | None = None) -> int:
        batch = self.consumer.poll_batch(self.max_batch, 0.05)
        received_us = time.time_ns() // 1000
        self.stats.consumed += len(batch)
        self.stats.invalid += len(batch.failures)  # already dead-lettered by the consumer
        records: list[dict[str, Any]] = []
        offsets: list[int] = []
        for event in batch.events:
            record = self._record(event)
            if record is not None:
                records.append(record)
                offsets.append(event.offset)
        if records:
            scores = self._score(records, stop)
            if scores is None:  # stopped before Redis came back: this batch must be consumed again
                self._abandoned = True
                return len(batch)
            scored_us = time.time_ns() // 1000
            for score, offset in zip(scores, offsets, strict=True):
                self.producer.send("predictions", prediction_record(score, received_us, scored_us, offset))
            self.producer.poll(0)
            self.service.observe_fraud("stream", scores)
            self.stats.scored += len(scores)
            self.stats.flagged += sum(s.decision for s in scores)
            self.stats.last_model_version = scores[-1].model_version
        if len(batch):
            self._uncommitted = True
            self.stats.batches += 1
        if time.monotonic() - self._last_commit >= self.commit_interval_s:
            self.commit()
        if self._on_batch is not None and len(batch):
            self._on_batch(self.stats)
        return len(batch)

    def _record(self, event: ConsumedEvent) -> dict[str, Any] | None:
        try:
            return normalize_transaction(event.value)
        except InvalidRequestError as exc:  # the contract let it through; the scorer cannot use it: dead-letter
            try:
                value: bytes | None = self.producer.contracts.serde("transactions").encode(event.value)
            except SlipstreamError:
                value = None
            raw = RawMessage(event.topic, event.partition, event.offset, event.timestamp_ms, event.key, value, ())
            self.producer.dead_letter(raw, error_type="invalid_value", reason=str(exc), processor="score-stream")
            self.stats.invalid += 1
            return None

    def _score(self, records: list[dict[str, Any]], stop: threading.Event | None) -> list[FraudScore] | None:
        delay = 0.05
        while True:
            try:
                return self.service.fraud.score_batch(records)
            except (FeaturesUnavailableError, ModelUnavailableError) as exc:
                self.stats.retries += 1
                self.service.metrics.requests.labels("stream", "fraud", type(exc).__name__).inc()
                log.warning("cannot score %d transactions yet (%s); retrying in %.2f s", len(records), exc, delay)
                if stop is not None and stop.wait(delay):
                    return None
                delay = min(delay * 2, 2.0)

    def commit(self) -> None:
        """Flush the predictions, then commit the offsets of everything consumed (at least once)."""
        self._last_commit = time.monotonic()
        if not self._uncommitted:
            return
        self.producer.flush()
        if self._abandoned:  # a batch was read but never scored: commit nothing, it is read again on restart
            return
        self.consumer.commit()
        self._uncommitted = False
