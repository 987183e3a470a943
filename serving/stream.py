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
missing features, and nothing is skipped (:mod:`slipstream.serving.kafka_front`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from slipstream.schemas.transport.consumer import ConsumedEvent
from slipstream.serving.base import FraudScore
from slipstream.serving.exceptions import InvalidRequestError
from slipstream.serving.fraud import normalize_transaction
from slipstream.serving.kafka_front import FrontStats, KafkaFrontEnd


@dataclass
class StreamStats(FrontStats):
    scored: int = 0
    flagged: int = 0


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


class ScoreStream(KafkaFrontEnd[StreamStats]):
    """Consumes ``transactions``, scores each batch with ``service.fraud``, produces to ``predictions``."""

    endpoint = "fraud"
    processor = "score-stream"
    source_topic = "transactions"

    def new_stats(self) -> StreamStats:
        return StreamStats()

    def handle(self, events: list[ConsumedEvent], received_us: int, stop: threading.Event | None) -> None:
        records: list[dict[str, Any]] = []
        offsets: list[int] = []
        for event in events:
            try:
                records.append(normalize_transaction(event.value))
                offsets.append(event.offset)
            except InvalidRequestError as exc:
                self.dead_letter(event, str(exc))
        if not records:
            return
        scores = self.retrying(lambda: self.service.fraud.score_batch(records), f"{len(records)} transactions", stop)
        scored_us = time.time_ns() // 1000
        for score, offset in zip(scores, offsets, strict=True):
            self.producer.send("predictions", prediction_record(score, received_us, scored_us, offset))
        self.service.observe_fraud("stream", scores)
        recent = self.service.fraud.recent
        if recent is not None:
            self.service.metrics.record_recent(
                reused=recent.reused, rebuilt=recent.rebuilt, confirmed=recent.confirmed, expired=recent.expired
            )
        self.stats.scored += len(scores)
        self.stats.flagged += sum(s.decision for s in scores)
        self.stats.last_model_version = scores[-1].model_version
