"""A partition's offsets, read through a broker restart: the one retry rule every state restore follows (the
engine's changelog restore and the monitoring processors')."""

from __future__ import annotations

import contextlib
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

__all__ = ["NEVER_CURED", "watermarks"]

# Errors no waiting cures (credentials, permissions, a bad request): a restore fails at once on these. Anything else
# while a leader is elected or moves (a topic just created, a broker restarting: timeouts, transport errors, a
# partition unknown to a stale metadata cache, no leader) is asked again until the patience runs out.
NEVER_CURED = frozenset(
    {
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError._AUTHENTICATION,
        KafkaError._SSL,
        KafkaError._INVALID_ARG,
        KafkaError._FATAL,
    }
)


def watermarks(reader: Consumer, tp: TopicPartition, *, timeout_s: float, error: type[Exception]) -> tuple[int, int]:
    """A partition's (low, high) offsets, asked again while its leader is being elected or moves (a topic just
    created, a broker restarting) for up to ``timeout_s``; then, or on an error no waiting cures, ``error`` with one
    line naming the partition."""
    started = time.monotonic()
    while True:
        try:
            low, high = reader.get_watermark_offsets(tp, timeout=5)
            return int(low), int(high)
        except KafkaException as exc:
            kafka_error = exc.args[0] if exc.args else None
            retriable = (
                isinstance(kafka_error, KafkaError)
                and not kafka_error.fatal()
                and kafka_error.code() not in NEVER_CURED
            )
            waited = time.monotonic() - started
            if not retriable or waited > timeout_s:
                msg = f"cannot read the offsets of {tp.topic}[{tp.partition}] (asked for {waited:.0f} s): {exc}"
                raise error(msg) from exc
            time.sleep(0.2)
            _refresh_metadata(reader, tp.topic)


def _refresh_metadata(reader: Consumer, topic: str) -> None:
    """Ask the cluster for ``topic``'s metadata now: a reader that is not subscribed to it may otherwise keep a cache
    that lost the topic while a broker was down and answer ``_UNKNOWN_PARTITION`` until its next periodic refresh
    (the chaos drill saw it for 90 s)."""
    with contextlib.suppress(KafkaException):
        reader.list_topics(topic, timeout=5)
