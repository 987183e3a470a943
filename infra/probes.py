"""Readiness by a real request: a Kafka metadata request and a Redis ``PING``/``INFO``.

The client libraries are imported when a probe runs, not when ``infra`` is imported, and only the few
fields the platform reads cross this boundary, as plain typed values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class KafkaMetadata:
    """What a metadata request said about the cluster."""

    cluster_id: str | None
    controller_id: int
    broker_ids: tuple[int, ...]


def kafka_metadata(
    bootstrap_servers: str, timeout_s: float, security: Mapping[str, Any] | None = None
) -> KafkaMetadata | None:
    """Ask ``bootstrap_servers`` for cluster metadata; None if it does not answer within ``timeout_s``.

    ``security``: librdkafka's security settings of the platform's own broker (``kafka_sasl.client_security``); the
    platform only probes the brokers it runs, so this is the one client config not built by
    ``schemas.transport.connection`` (``infra`` knows nothing of the other parts)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    client = AdminClient(
        {
            "bootstrap.servers": bootstrap_servers,
            **(security or {}),
            # The probe reports failure itself; librdkafka's "connection refused" lines would only be noise.
            "log_level": 0,
            "socket.connection.setup.timeout.ms": max(1000, int(timeout_s * 1000)),
        }
    )
    try:
        metadata = client.list_topics(timeout=timeout_s)
    except KafkaException:
        return None
    cluster_id = metadata.cluster_id
    return KafkaMetadata(
        cluster_id=cluster_id if isinstance(cluster_id, str) else None,
        controller_id=int(metadata.controller_id),
        broker_ids=tuple(sorted(int(broker_id) for broker_id in metadata.brokers)),
    )


def kafka_partitions_out_of_sync(bootstrap_servers: str, node_id: int, timeout_s: float) -> int | None:
    """How many partitions list broker ``node_id`` as a replica but not in their ISR (0: it is fully caught up);
    None if the cluster does not answer within ``timeout_s``."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    client = AdminClient({"bootstrap.servers": bootstrap_servers, "log_level": 0})
    try:
        metadata = client.list_topics(timeout=timeout_s)
    except KafkaException:
        return None
    return sum(
        1
        for topic in metadata.topics.values()
        for partition in topic.partitions.values()
        if node_id in partition.replicas and node_id not in partition.isrs
    )


@dataclass(frozen=True, slots=True)
class RedisLogin:
    """How a probe reaches a TLS Redis with an ACL login."""

    ca_file: str
    username: str
    password: str = field(repr=False)


def redis_version(host: str, port: int, timeout_s: float, tls: RedisLogin | None = None) -> str | None:
    """``PING`` Redis at ``host:port`` and return its ``redis_version``; None if it does not answer. ``tls``: over
    TLS (verified against its CA) with an ACL login."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    login: dict[str, Any] = {}
    if tls is not None:
        login = {"ssl": True, "ssl_ca_certs": tls.ca_file, "username": tls.username, "password": tls.password}
    # No client-side retries (redis-py retries refused connections with backoff by default): the
    # launcher's own loop polls, and a probe must answer within its timeout.
    client = redis.Redis(
        host=host,
        port=port,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        **login,
    )
    try:
        if not client.ping():
            return None
        version = client.info("server").get("redis_version")
    except redis.RedisError:
        return None
    finally:
        client.close()
    return str(version) if version is not None else "unknown"


def redis_cluster_info(host: str, port: int, timeout_s: float) -> dict[str, str] | None:
    """``CLUSTER INFO`` of the Redis Cluster node at ``host:port`` (``cluster_state``, ``cluster_known_nodes``, ...)
    as text fields; None if it does not answer or is not a cluster node."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis(
        host=host, port=port, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0)
    )
    try:
        info = client.execute_command("CLUSTER INFO")
    except redis.RedisError:
        return None
    finally:
        client.close()
    if isinstance(info, dict):  # redis-py parses it (its callback for CLUSTER INFO)
        return {str(key): value.decode() if isinstance(value, bytes) else str(value) for key, value in info.items()}
    text = info.decode() if isinstance(info, bytes) else str(info)
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}
