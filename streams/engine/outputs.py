"""A stage's outputs on librdkafka producers: the :class:`~slipstream.streams.engine.base.StageOutputs` both
runtimes send through (thread-safe, so a Faust agent flushes them from an executor thread as the Kafka runner does
from its loop).

Two raw producers: the repartition hop and its markers (``linger_ms``, on the next stage's latency path) and the
changelog (``bulk_linger_ms``: restore, training and audit are on no one's latency path, and batching spares the
broker a produce request per event); the feature log and dead letters go through an
:class:`~slipstream.schemas.transport.EventProducer` under their contracts. All idempotent with ``acks=all``.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import ExitStack
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from slipstream.schemas.contracts import Contracts
from slipstream.schemas.dead_letter import RawMessage
from slipstream.schemas.transport import EventProducer
from slipstream.schemas.transport.connection import KafkaLike, close_client, kafka_config
from slipstream.streams.engine.exceptions import StateError
from slipstream.streams.engine.settings import EngineSettings


class KafkaOutputs:
    def __init__(
        self, bootstrap_servers: KafkaLike, contracts: Contracts, *, linger_ms: float, bulk_linger_ms: float
    ) -> None:
        self._failed: list[str] = []
        self._hop = _raw_producer(bootstrap_servers, linger_ms, self._on_delivery_error)
        self._bulk = _raw_producer(bootstrap_servers, bulk_linger_ms, self._on_delivery_error)
        self._events = EventProducer(bootstrap_servers, contracts, linger_ms=bulk_linger_ms)

    @classmethod
    def for_stage(cls, settings: EngineSettings, contracts: Contracts) -> KafkaOutputs:
        return cls(
            settings.bootstrap_servers, contracts, linger_ms=settings.linger_ms, bulk_linger_ms=settings.bulk_linger_ms
        )

    def forward(self, topic: str, key: bytes, value: bytes, partition: int | None = None) -> None:
        _produce(self._hop, topic, key, value, partition)

    def changelog(self, topic: str, key: bytes, value: bytes | None, partition: int) -> None:
        _produce(self._bulk, topic, key, value, partition)

    def event(self, topic: str, record: Mapping[str, Any]) -> None:
        self._events.send(topic, record)

    def dead_letter(self, message: RawMessage, *, error_type: str, reason: str, processor: str) -> None:
        self._events.dead_letter(message, error_type=error_type, reason=reason, processor=processor)

    def poll(self) -> None:
        for producer in (self._hop, self._bulk):
            producer.poll(0)
        self._events.poll(0)

    def flush(self, timeout_s: float) -> None:
        """librdkafka's flush sends at once, linger or not; raises :class:`StateError` on anything unacknowledged."""
        for producer in (self._hop, self._bulk):
            remaining = producer.flush(timeout_s)
            if remaining:
                msg = f"{remaining} output record(s) unacknowledged after {timeout_s:g} s (is the broker up?)"
                raise StateError(msg)
        if self._failed:
            failures, self._failed = self._failed, []
            msg = f"{len(failures)} output record(s) failed delivery, first: {failures[0]}"
            raise StateError(msg)
        self._events.flush(timeout_s)  # raises ProduceError itself

    def close(self, *, discard: bool) -> None:
        """Close all three producers, each whatever the others raise (then the last error propagates, the earlier ones
        chained to it)."""
        flush_s = 0 if discard else 10
        with ExitStack() as closing:
            closing.callback(self._events.close, timeout=flush_s)
            for producer in (self._bulk, self._hop):
                closing.callback(close_client, producer, flush_s=flush_s, discard=discard)

    def _on_delivery_error(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:  # only failures are reported (delivery.report.only.error)
            self._failed.append(f"{msg.topic()}[{msg.partition()}]: {err.str()}")


def _produce(producer: Producer, topic: str, key: bytes, value: bytes | None, partition: int | None) -> None:
    while True:
        try:
            if partition is None:
                producer.produce(topic, value, key)
            else:
                producer.produce(topic, value, key, partition=partition)
            return
        except BufferError:
            producer.poll(0.05)


def _raw_producer(bootstrap: KafkaLike, linger_ms: float, on_error: Any) -> Producer:
    return Producer(
        {
            **kafka_config(bootstrap),
            "on_delivery": on_error,
            "delivery.report.only.error": True,  # no Python callback per delivered record
            "enable.idempotence": True,
            "acks": "all",  # what idempotence implies, said: on 3 brokers a write is safe once 2 replicas hold it
            "linger.ms": linger_ms,
            "socket.nagle.disable": True,  # no Nagle delay on small, latency-bound requests
            "compression.type": "lz4",
            "partitioner": "murmur2_random",
            "queue.buffering.max.messages": 1_000_000,
        }
    )


__all__ = ["KafkaOutputs"]
