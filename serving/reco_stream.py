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

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slipstream.schemas.transport import EventConsumer, EventProducer
from slipstream.schemas.transport.consumer import ConsumedEvent
from slipstream.serving.base import Recommendation
from slipstream.serving.exceptions import InvalidRequestError, ModelUnavailableError
from slipstream.serving.kafka_front import FrontStats, KafkaFrontEnd
from slipstream.serving.service import ScoringService

REQUESTS = "recommendation-requests"
RECOMMENDATIONS = "recommendations"
PROCESSOR = "score-stream-reco"


@dataclass
class RecoStreamStats(FrontStats):
    ranked: int = 0
    items: int = 0


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


class RecoStream(KafkaFrontEnd[RecoStreamStats]):
    """Consumes ``recommendation-requests``, ranks each with ``service.reco``, produces to ``recommendations``."""

    endpoint = "reco"
    processor = PROCESSOR
    source_topic = REQUESTS

    default_max_batch = 100

    def __init__(
        self,
        service: ScoringService,
        consumer: EventConsumer,
        producer: EventProducer,
        *,
        commit_interval_s: float = 0.2,
        max_batch: int | None = None,
        on_batch: Callable[[RecoStreamStats], None] | None = None,
    ) -> None:
        if service.reco is None:
            msg = "this scoring service has no reco scorer (build it with reco=True)"
            raise ModelUnavailableError(msg)
        self.reco = service.reco
        super().__init__(
            service, consumer, producer, commit_interval_s=commit_interval_s, max_batch=max_batch, on_batch=on_batch
        )

    def new_stats(self) -> RecoStreamStats:
        return RecoStreamStats()

    def handle(self, events: list[ConsumedEvent], received_us: int, stop: threading.Event | None) -> None:
        for event in events:
            reco = self._rank(event, stop)
            if reco is None:
                continue
            record = recommendation_record(
                reco,
                top_k=event.value.get("top_k"),
                received_us=received_us,
                scored_us=time.time_ns() // 1000,
                offset=event.offset,
            )
            self.producer.send(RECOMMENDATIONS, record)
            self.service.metrics.observe_timings("stream", "reco", reco.timings_us)
            self.service.metrics.requests.labels("stream", "reco", "ok").inc()
            self.stats.ranked += 1
            self.stats.items += len(record["items"])
            self.stats.last_model_version = reco.model_version

    def _rank(self, event: ConsumedEvent, stop: threading.Event | None) -> Recommendation | None:
        """The ranking; None when the request is invalid (dead-lettered). Raises ``Abandoned`` when stopped."""
        request = dict(event.value)
        top_k = request.get("top_k")
        if top_k is not None and top_k < 1:
            self.dead_letter(event, f"top_k must be >= 1 or null, got {top_k!r}")
            return None
        if request.get("request_id") is None:
            request["request_id"] = f"{event.topic}/{event.partition}/{event.offset}"
        try:
            return self.retrying(lambda: self.reco.rank(request), f"request {request['request_id']}", stop)
        except InvalidRequestError as exc:
            self.dead_letter(event, str(exc))
            return None
