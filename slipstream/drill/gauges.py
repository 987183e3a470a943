"""What the drill watches while it streams: how far the scorer is behind (committed offsets of its group), whether
the loop is retraining (``model-events``), and when every processor has drained its inputs."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from slipstream.monitoring.monitor import TopicReader
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.transport.connection import KafkaLike, kafka_config

FINISHED = frozenset({"RETRAINED", "RETRAIN_FAILED", "CHALLENGER_REJECTED"})


class GroupOffsets:
    """The committed offsets of consumer groups (a consumer that never joins: it only asks)."""

    def __init__(self, bootstrap: KafkaLike) -> None:
        self._bootstrap = bootstrap
        self._consumers: dict[str, Consumer] = {}
        self._parts: dict[str, list[TopicPartition]] = {}

    def _consumer(self, group: str) -> Consumer:
        found = self._consumers.get(group)
        if found is None:
            found = Consumer(
                {**kafka_config(self._bootstrap), "group.id": group, "enable.auto.commit": False, "log_level": 3}
            )
            self._consumers[group] = found
        return found

    def _partitions(self, consumer: Consumer, topic: str) -> list[TopicPartition]:
        found = self._parts.get(topic)
        if found is None:
            found = [TopicPartition(topic, p) for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions]
            self._parts[topic] = found
        return found

    def committed(self, group: str, topic: str) -> int:
        """Sum over ``topic``'s partitions of ``group``'s committed offsets (0 where none)."""
        consumer = self._consumer(group)
        offsets = consumer.committed(self._partitions(consumer, topic), timeout=10)
        return sum(max(tp.offset, 0) for tp in offsets)

    def end(self, topic: str) -> int:
        consumer = self._consumer("slipstream-drill-gauge")
        return sum(
            consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)[1]
            for tp in self._partitions(consumer, topic)
        )

    def lag(self, group: str, topics: Iterable[str]) -> int:
        return sum(max(self.end(t) - self.committed(group, t), 0) for t in topics)

    def close(self) -> None:
        for consumer in self._consumers.values():
            consumer.close()
        self._consumers.clear()


class RetrainWatch:
    """Follows ``model-events``: which retrains are in flight (RETRAIN_STARTED without its end), and every event."""

    def __init__(self, bootstrap: KafkaLike, contracts: Contracts, stop: threading.Event) -> None:
        self.in_flight: set[str] = set()
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = stop
        self._reader = TopicReader(bootstrap, contracts, ("model-events",))
        self._thread = threading.Thread(target=self._run, name="drill-model-events", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                records, _ = self._reader.poll(1000, 0.2)
                with self._lock:
                    for r in records:
                        self.events.append(r)
                        retrain_id = _retrain_id(r)
                        if retrain_id is None:
                            continue
                        if r["action"] == "RETRAIN_STARTED":
                            self.in_flight.add(retrain_id)
                        elif r["action"] in FINISHED:
                            self.in_flight.discard(retrain_id)
        finally:
            self._reader.close()

    @property
    def retraining(self) -> bool:
        with self._lock:
            return bool(self.in_flight)

    @property
    def seen(self) -> int:
        """How many events were read so far (a count, without copying them)."""
        with self._lock:
            return len(self.events)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.events)

    def join(self) -> None:
        self._thread.join(5)


def _retrain_id(event: dict[str, Any]) -> str | None:
    """The retrain an event is about: a RETRAIN_STARTED's own id (the loop's decision id), else its evidence's."""
    if event.get("action") == "RETRAIN_STARTED":
        return str(event["event_id"])
    text = event.get("evidence")
    if not text:
        return None
    try:
        evidence = json.loads(text)
    except ValueError:
        return None
    found = evidence.get("retrain_id") if isinstance(evidence, dict) else None
    return str(found) if found is not None else None
