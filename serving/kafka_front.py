"""What both Kafka front ends share: poll a batch, handle it, produce, and commit only what is done.

Delivery is at least once. Offsets are committed about every ``commit_interval_s``, and only when everything
produced for the consumed records is acknowledged (at a moment nothing is in flight, or after a flush). When a
record cannot be handled yet — Redis unreachable, no model loaded — it is retried with back-off until it can; if
the front end is stopped meanwhile, the batch is *abandoned*: nothing more is committed, so a restart reads it
again. Records the contract let through but the scorer cannot use go to ``dead-letter`` with the reason.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from slipstream.schemas.dead_letter import RawMessage
from slipstream.schemas.exceptions import SlipstreamError
from slipstream.schemas.transport import EventConsumer, EventProducer
from slipstream.schemas.transport.consumer import ConsumedBatch, ConsumedEvent
from slipstream.serving.collector import ScheduledCollector
from slipstream.serving.exceptions import FeaturesUnavailableError, ModelUnavailableError
from slipstream.serving.service import ScoringService, freeze_startup_heap

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_BACKOFF_S = 2.0


@dataclass
class FrontStats:
    consumed: int = 0
    invalid: int = 0  # dead-lettered: undecodable, or unusable by the scorer
    retries: int = 0
    batches: int = 0
    last_model_version: str = ""
    started: float = field(default_factory=time.monotonic)
    poll_s: float = 0.0  # wall time waiting for and decoding input
    handle_s: float = 0.0  # scoring and producing
    commit_s: float = 0.0  # flushing outputs and committing offsets


S = TypeVar("S", bound=FrontStats)


class Abandoned(Exception):
    """Stopped while a record waited for Redis or a model: the batch must be consumed again."""


OVERDUE = 5  # after this many commit intervals without a quiet moment, a commit waits for the producer


class KafkaFrontEnd(ABC, Generic[S]):
    """Template of a Kafka front end: subclasses say how a batch of decoded events becomes produced records."""

    endpoint: str = ""
    processor: str = ""
    source_topic: str = ""
    default_max_batch: int = 500

    def __init__(
        self,
        service: ScoringService,
        consumer: EventConsumer,
        producer: EventProducer,
        *,
        commit_interval_s: float = 0.2,
        max_batch: int | None = None,
        on_batch: Callable[[S], None] | None = None,
    ) -> None:
        self.service = service
        self.consumer = consumer
        self.producer = producer
        self.stats = self.new_stats()
        self.commit_interval_s = commit_interval_s
        self.max_batch = max_batch or self.default_max_batch
        self._on_batch = on_batch
        self._last_commit = time.monotonic()
        self._uncommitted = False
        self._abandoned = False
        self.collector = ScheduledCollector()

    @abstractmethod
    def new_stats(self) -> S:
        """This front end's counters, zeroed."""

    @abstractmethod
    def handle(self, events: list[ConsumedEvent], received_us: int, stop: threading.Event | None) -> None:
        """Score ``events`` and produce the results; raise :class:`Abandoned` if stopped while waiting."""

    def run(self, stop: threading.Event, *, until_idle_s: float | None = None) -> S:
        """Work until ``stop`` is set (or nothing arrived for ``until_idle_s``); commit what is done, then return."""
        freeze_startup_heap()
        idle_since = time.monotonic()
        try:
            with self.collector:
                while not stop.is_set():
                    got = self.step(stop)
                    now = time.monotonic()
                    if got:
                        idle_since = now
                        self.collector.after_batch(got)
                    elif until_idle_s is not None and now - idle_since >= until_idle_s:
                        break
                    else:
                        self.collector.when_idle()
        finally:
            self.commit(final=True)
        return self.stats

    def step(self, stop: threading.Event | None = None) -> int:
        """One poll: handle every record in it; returns how many messages were consumed."""
        t0 = time.perf_counter()
        batch: ConsumedBatch = self.consumer.poll_batch(self.max_batch, 0.05)
        received_us = time.time_ns() // 1000
        t1 = time.perf_counter()
        self.stats.poll_s += t1 - t0
        self.stats.consumed += len(batch)
        self.stats.invalid += len(batch.failures)  # already dead-lettered by the consumer
        if batch.events:
            try:
                self.handle(batch.events, received_us, stop)
            except Abandoned:
                self._abandoned = True
                return len(batch)
            self.producer.poll(0)
            self.stats.handle_s += time.perf_counter() - t1
        if len(batch):
            self._uncommitted = True
            self.stats.batches += 1
        if time.monotonic() - self._last_commit >= self.commit_interval_s:
            self.commit()
        if self._on_batch is not None and len(batch):
            self._on_batch(self.stats)
        return len(batch)

    def retrying(self, call: Callable[[], T], what: str, stop: threading.Event | None) -> T:
        """``call()``, retried with back-off while Redis or the model is unavailable; :class:`Abandoned` on stop."""
        delay = 0.05
        while True:
            try:
                return call()
            except (FeaturesUnavailableError, ModelUnavailableError) as exc:
                self.stats.retries += 1
                self.service.metrics.requests.labels("stream", self.endpoint, type(exc).__name__).inc()
                log.warning("cannot score %s yet (%s); retrying in %.2f s", what, exc, delay)
                if stop is not None and stop.wait(delay):
                    raise Abandoned from exc
                delay = min(delay * 2, MAX_BACKOFF_S)

    def dead_letter(self, event: ConsumedEvent, reason: str) -> None:
        """Send ``event`` (re-encoded: the contract accepted it) to ``dead-letter`` with the reason."""
        try:
            value: bytes | None = self.producer.contracts.serde(self.source_topic).encode(event.value)
        except SlipstreamError:
            value = None
        raw = RawMessage(event.topic, event.partition, event.offset, event.timestamp_ms, event.key, value, ())
        self.producer.dead_letter(raw, error_type="invalid_value", reason=reason, processor=self.processor)
        self.service.metrics.requests.labels("stream", self.endpoint, "invalid_request").inc()
        self.stats.invalid += 1

    def commit(self, *, final: bool = False) -> None:
        """Commit the offsets of everything consumed once everything produced is acknowledged (at least once).

        On the hot path it waits for no one: while outputs are still in flight it returns and is tried again after
        the next batch (waiting here held up every event behind it, up to 25 ms), until ``OVERDUE`` intervals have
        passed without a quiet moment; then it waits for the producer. The offsets go without waiting for the
        coordinator, except the last time (``final``), which waits for both."""
        started = time.monotonic()
        if not final and self.producer.in_flight() and started - self._last_commit < OVERDUE * self.commit_interval_s:
            return  # predictions still on their way: try again after the next batch rather than wait for them here
        self._last_commit = started
        if not self._uncommitted:
            return
        try:
            self.producer.flush()
            if self._abandoned:  # a record was read but never handled: commit nothing, it is read again on restart
                return
            self.consumer.commit(asynchronous=not final)
            self._uncommitted = False
        finally:
            self.stats.commit_s += time.monotonic() - started
