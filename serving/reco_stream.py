"""The Kafka front end of recommendations (``slipstream score-stream --reco``): ``recommendation-requests`` in,
``recommendations`` out, ranked by the same :class:`~serving.reco.RecoScorer` as ``POST /v1/recommendations``.

Delivery: at least once. Offsets are committed only after the recommendations of everything consumed so far are
acknowledged (flushed); a replay after a crash re-sends a recommendation with the same ``request_id`` — the
request's own, or ``<topic>/<partition>/<offset>`` of the request when it has none — which consumers de-duplicate
on. Requests are keyed by user, so workers scale out with the topic's partitions.

A request the contract let through but the ranker cannot use (a duplicate item, an id out of range) goes to
``dead-letter`` with the reason. When Redis cannot be read or no reco model is loaded, the request is retried (with
back-off) until it can be ranked: never a ranking from missing features, and nothing is skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from schemas.dead_letter import RawMessage
from schemas.exceptions import SlipstreamError
from schemas.transport import EventConsumer, EventProducer
from schemas.transport.consumer import ConsumedEvent
from serving.base import Recommendation
from serving.exceptions import FeaturesUnavailableError, InvalidRequestError, ModelUnavailableError
from serving.service import ScoringService

log = logging.getLogger(__name__)
REQUESTS = "recommendation-requests"
RECOMMENDATIONS = "recommendations"
PROCESSOR = "score-stream-reco"


@dataclass
class RecoStreamStats:
    consumed: int = 0
    ranked: int = 0
    items: int = 0
    invalid: int = 0
    retries: int = 0
    batches: int = 0
    last_model_version: str = ""
    started: float = field(default_factory=time.monotonic)


def recommendation_record(
    reco: Recommendation,
    *,
    top_k: int | None = None,
    received_us: int | None = None,
    scored_us: int,
    offset: int | None = None,
) -> dict[str, Any]:
    """The ``recommendations`` record of one ranking: the items (the best ``top_k``, or all) with their scores and
    features, the model, the features' freshness and the timings."""
    items = reco.items[:top_k] if top_k else reco.items
    return {
        "request_id": reco.request_id,
        "user_id": reco.user_id,
        "model_name": reco.model_name,
        "model_version": reco.model_version,
        "items": [{"item_id": i.item_id, "score": i.score, "rank": i.rank, "features": i.features} for i in items],
        "feature_event_time": reco.feature_event_us,
        "feature_age_ms": reco.feature_age_ms,
        "event_time": reco.event_time_us,
        "scored_at": scored_us,
        "received_at": received_us,
        "timings_us": reco.timings_us,
        "source_offset": offset,
    }


class RecoStream:
    """Consumes ``recommendation-requests``, ranks each with ``service.reco``, produces to ``recommendations``."""

    def __init__(
        self,
        service: ScoringService,
        consumer: EventConsumer,
        producer: EventProducer,
        *,
        commit_interval_s: float = 0.2,
        max_batch: int = 100,
        on_batch: Callable[[RecoStreamStats], None] | None = None,
    ) -> None:
        if service.reco is None:
            msg = "this scoring service has no reco scorer (build it with reco=True)"
            raise ModelUnavailableError(msg)
        self.service = service
        self.reco = service.reco
        self.consumer = consumer
        self.producer = producer
        self.commit_interval_s = commit_interval_s
        self.max_batch = max_batch
        self.stats = RecoStreamStats()
        self._on_batch = on_batch
        self._last_commit = time.monotonic()
        self._uncommitted = False
        self._abandoned = False

    def run(self, stop: threading.Event, *, until_idle_s: float | None = None) -> RecoStreamStats:
        """Rank until ``stop`` is set (or nothing arrived for ``until_idle_s``); commit what is done, then return."""
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
        """One poll: rank and produce every request in it; returns how many messages were consumed."""
        batch = self.consumer.poll_batch(self.max_batch, 0.05)
        received_us = time.time_ns() // 1000
        self.stats.consumed += len(batch)
        self.stats.invalid += len(batch.failures)  # already dead-lettered by the consumer
        for event in batch.events:
            reco = self._rank(event, stop)
            if reco is False:  # stopped before it could be ranked: it must be consumed again
                self._abandoned = True
                break
            if reco is None:
                continue
            top_k = event.value.get("top_k")
            record = recommendation_record(
                reco, top_k=top_k, received_us=received_us, scored_us=time.time_ns() // 1000, offset=event.offset
            )
            self.producer.send(RECOMMENDATIONS, record)
            self.service.metrics.observe_timings("stream", "reco", reco.timings_us)
            self.service.metrics.requests.labels("stream", "reco", "ok").inc()
            self.stats.ranked += 1
            self.stats.items += len(record["items"])
            self.stats.last_model_version = reco.model_version
        self.producer.poll(0)
        if len(batch):
            self._uncommitted = True
            self.stats.batches += 1
        if time.monotonic() - self._last_commit >= self.commit_interval_s:
            self.commit()
        if self._on_batch is not None and len(batch):
            self._on_batch(self.stats)
        return len(batch)

    def _rank(self, event: ConsumedEvent, stop: threading.Event | None) -> Recommendation | None | Literal[False]:
        """The ranking; None when the request is invalid (dead-lettered); False when stopped while waiting."""
        request = dict(event.value)
        top_k = request.get("top_k")
        if top_k is not None and top_k < 1:
            self._dead_letter(event, f"top_k must be >= 1 or null, got {top_k!r}")
            return None
        if request.get("request_id") is None:
            request["request_id"] = f"{event.topic}/{event.partition}/{event.offset}"
        delay = 0.05
        while True:
            try:
                return self.reco.rank(request)
            except InvalidRequestError as exc:
                self._dead_letter(event, str(exc))
                return None
            except (FeaturesUnavailableError, ModelUnavailableError) as exc:
                self.stats.retries += 1
                self.service.metrics.requests.labels("stream", "reco", type(exc).__name__).inc()
                log.warning("cannot rank request %s yet (%s); retrying in %.2f s", request["request_id"], exc, delay)
                if stop is not None and stop.wait(delay):
                    return False
                delay = min(delay * 2, 2.0)

    def _dead_letter(self, event: ConsumedEvent, reason: str) -> None:
        try:
            value: bytes | None = self.producer.contracts.serde(REQUESTS).encode(event.value)
        except SlipstreamError:
            value = None
        raw = RawMessage(event.topic, event.partition, event.offset, event.timestamp_ms, event.key, value, ())
        self.producer.dead_letter(raw, error_type="invalid_value", reason=reason, processor=PROCESSOR)
        self.service.metrics.requests.labels("stream", "reco", "invalid_request").inc()
        self.stats.invalid += 1

    def commit(self) -> None:
        """Flush the recommendations, then commit the offsets of everything consumed (at least once)."""
        self._last_commit = time.monotonic()
        if not self._uncommitted:
            return
        self.producer.flush()
        if self._abandoned:  # a request was read but never ranked: commit nothing, it is read again on restart
            return
        self.consumer.commit()
        self._uncommitted = False
