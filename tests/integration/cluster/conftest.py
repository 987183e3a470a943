"""Clustered services for the resilience tests, one each for this package: a 3-node Kafka (``kafka_cluster``) and a
Redis Cluster of three masters (``redis_cluster``, on 17050-17052, state in ``.slipstream/test-redis-cluster``).

They run on ports of their own in 29000-29099 and state directories of their own under ``.slipstream/``, so they
never touch a platform started with ``slipstream infra up`` (9092/6379) or the suite's test platform (19092/16379).
Each is stopped once this package's tests are done (kept for the session, the three idle brokers took ~4 % of a
core each for the rest of the suite) unless it was already running or ``SLIPSTREAM_TEST_KEEP_SERVICES=1``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from slipstream.infra.config import PlatformConfig
from slipstream.infra.exceptions import InfraError
from slipstream.infra.platform import Platform
from slipstream.infra.redis_cluster_local import LocalRedisCluster

REPO = Path(__file__).resolve().parents[3]
KAFKA_VERSION = os.environ.get("SLIPSTREAM_KAFKA_VERSION", "4.3.1")

# Kafka: node n on 29000 + 2*(n-1) (broker) and 29001 + 2*(n-1) (controller): 29000-29005; its Redis: 29009.
KAFKA_CLUSTER_STATE_DIR = REPO / ".slipstream" / "test-cluster"
KAFKA_CLUSTER_PORT, KAFKA_CLUSTER_CONTROLLER_PORT, KAFKA_CLUSTER_REDIS_PORT = 29000, 29001, 29009


def _keep_services() -> bool:
    return os.environ.get("SLIPSTREAM_TEST_KEEP_SERVICES") == "1"


@pytest.fixture(scope="package")
def kafka_cluster() -> Iterator[Platform]:
    """A local platform whose Kafka is 3 KRaft nodes (each broker + controller), ready: all 3 live brokers.

    Tests may stop and start one node (``stop_broker``/``start_broker``) but must leave all three running."""
    config = PlatformConfig(
        state_dir=KAFKA_CLUSTER_STATE_DIR,
        backend="local",
        brokers=3,
        kafka_version=KAFKA_VERSION,
        kafka_port=KAFKA_CLUSTER_PORT,
        controller_port=KAFKA_CLUSTER_CONTROLLER_PORT,
        redis_port=KAFKA_CLUSTER_REDIS_PORT,
        startup_timeout_s=240,
    )
    platform = Platform(config)
    already_up = all(status.up for status in platform.status().values())
    begin = time.monotonic()
    try:
        platform.up()
    except InfraError as exc:
        pytest.fail(f"the 3-node Kafka cluster cannot be had: {exc}", pytrace=False)
    print(f"\n3-node Kafka cluster ready in {time.monotonic() - begin:.1f} s ({config.bootstrap_servers})")
    try:
        yield platform
    finally:
        if not already_up and not _keep_services():
            platform.down()


# Redis Cluster: masters on 17050-17052, their cluster buses on 27050-27052.
REDIS_CLUSTER_STATE_DIR = REPO / ".slipstream" / "test-redis-cluster"
REDIS_CLUSTER_PORT = 17050


@pytest.fixture(scope="package")
def redis_cluster() -> Iterator[LocalRedisCluster]:
    """A local Redis Cluster of three masters, ready (every master ``cluster_state:ok``); its URL is
    ``redis_cluster.config.redis_url`` (``redis+cluster://...``). Tests may stop and start one master
    (``stop_node``/``start_node``) but must leave all three running."""
    config = PlatformConfig(
        state_dir=REDIS_CLUSTER_STATE_DIR,
        backend="local",
        redis_cluster=True,
        redis_cluster_port=REDIS_CLUSTER_PORT,
        startup_timeout_s=120,
    )
    cluster = LocalRedisCluster(config)
    already_up = cluster.status().up
    try:
        cluster.up()
    except InfraError as exc:
        pytest.fail(f"the Redis Cluster cannot be had: {exc}", pytrace=False)
    try:
        yield cluster
    finally:
        if not already_up and not _keep_services():
            cluster.down()
