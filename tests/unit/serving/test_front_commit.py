"""When the Kafka front end commits: never past a record whose output is unacknowledged, and on the hot path without
waiting for the producer unless a quiet moment has not come for several intervals."""

from __future__ import annotations

import threading
import time
from typing import cast

from slipstream.schemas.transport import EventConsumer, EventProducer
from slipstream.schemas.transport.consumer import ConsumedEvent
from slipstream.serving.kafka_front import OVERDUE, FrontStats, KafkaFrontEnd
from slipstream.serving.service import ScoringService


class _Producer:
    def __init__(self) -> None:
        self.pending = 0
        self.flushes = 0

    def in_flight(self) -> int:
        return self.pending

    def flush(self, timeout: float = 30.0) -> None:
        self.flushes += 1
        self.pending = 0  # a flush returns once the broker acknowledged everything


class _Consumer:
    def __init__(self) -> None:
        self.commits: list[bool] = []

    def commit(self, *, asynchronous: bool = True) -> None:
        self.commits.append(asynchronous)


class _Front(KafkaFrontEnd[FrontStats]):
    def new_stats(self) -> FrontStats:
        return FrontStats()

    def handle(self, events: list[ConsumedEvent], received_us: int, stop: threading.Event | None) -> None:
        raise NotImplementedError


def _front(interval: float = 0.2) -> tuple[_Front, _Producer, _Consumer]:
    producer, consumer = _Producer(), _Consumer()
    front = _Front(
        cast(ScoringService, None),
        cast(EventConsumer, consumer),
        cast(EventProducer, producer),
        commit_interval_s=interval,
    )
    front._uncommitted = True
    return front, producer, consumer


def test_a_commit_waits_for_no_one_while_outputs_are_in_flight() -> None:
    front, producer, consumer = _front()
    producer.pending = 3
    before = front._last_commit
    front.commit()
    assert producer.flushes == 0 and consumer.commits == []
    assert front._last_commit == before


def test_a_quiet_moment_commits_at_once() -> None:
    front, producer, consumer = _front()
    front.commit()
    assert consumer.commits == [True]  # asynchronous: the hot path does not wait for the coordinator
    assert producer.flushes == 1 and not front._uncommitted


def test_without_a_quiet_moment_for_several_intervals_the_commit_waits_for_the_producer() -> None:
    front, producer, consumer = _front(interval=0.2)
    producer.pending = 5
    front._last_commit = time.monotonic() - OVERDUE * 0.2 - 0.01
    front.commit()
    assert producer.flushes == 1 and producer.pending == 0
    assert consumer.commits == [True]


def test_the_final_commit_always_waits_and_is_synchronous() -> None:
    front, producer, consumer = _front()
    producer.pending = 2
    front.commit(final=True)
    assert producer.flushes == 1 and consumer.commits == [False]


def test_nothing_is_committed_after_an_abandoned_record() -> None:
    front, producer, consumer = _front()
    front._abandoned = True
    front.commit()
    assert producer.flushes == 1 and consumer.commits == []
