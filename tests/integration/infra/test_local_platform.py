"""The local backend for real: a Kafka 4 JVM from Maven Central jars and Debian's redis-server.

Every platform here runs on free ports of its own and in a temporary state directory, so a platform already
running on 9092/6379 (or the session's test platform) is never touched. Jars come from the shared cache.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from slipstream.infra import _proc
from slipstream.infra.base import ServiceStatus
from slipstream.infra.config import PlatformConfig
from slipstream.infra.exceptions import PortInUseError, ServiceDiedError
from slipstream.infra.platform import Platform
from slipstream.infra.ports import port_is_free

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_config(state_dir: Path, **overrides: object) -> PlatformConfig:
    ports: set[int] = set()
    while len(ports) < 3:
        ports.add(free_port())
    kafka_port, controller_port, redis_port = sorted(ports)
    settings: dict[str, object] = {
        "state_dir": state_dir,
        "backend": "local",
        "kafka_port": kafka_port,
        "controller_port": controller_port,
        "redis_port": redis_port,
        "startup_timeout_s": 180.0,
    }
    settings.update(overrides)
    return PlatformConfig(**settings)  # type: ignore[arg-type]


def version_tuple(version: str | None) -> tuple[int, ...]:
    assert version is not None
    return tuple(int(part) for part in version.split("."))


class Started:
    def __init__(self, platform: Platform, statuses: dict[str, ServiceStatus], seconds: float) -> None:
        self.platform, self.statuses, self.seconds = platform, statuses, seconds


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Started]:
    config = make_config(tmp_path_factory.mktemp("platform") / "state")
    messages: list[str] = []
    platform = Platform(config, progress=messages.append)
    begin = time.monotonic()
    try:
        statuses = platform.up()
        yield Started(platform, statuses, time.monotonic() - begin)
    finally:
        platform.down(wipe=True)


def test_up_reports_both_services(started: Started) -> None:
    config = started.platform.config
    kafka, redis_status = started.statuses["kafka"], started.statuses["redis"]
    assert kafka.up and redis_status.up
    assert kafka.address == config.bootstrap_servers
    assert version_tuple(kafka.version) >= (4, 0, 1)
    assert kafka.version == config.kafka_version
    assert kafka.backend == redis_status.backend == "local"
    assert kafka.pid is not None and _proc.pid_alive(kafka.pid)
    assert redis_status.address == config.redis_url
    assert version_tuple(redis_status.version) >= (6,)
    # The broker itself confirms the version the jar names claim.
    assert started.platform.kafka.logged_version() == kafka.version


def test_status_json_shape(started: Started) -> None:
    report = started.platform.status_json()
    config = started.platform.config
    assert report["kafka"]["up"] is True
    assert report["kafka"]["bootstrap_servers"] == config.bootstrap_servers
    assert report["kafka"]["version"] == config.kafka_version
    assert report["kafka"]["backend"] == "local"
    assert report["kafka"]["pid"] == started.statuses["kafka"].pid
    assert report["redis"]["up"] is True
    assert report["redis"]["url"] == config.redis_url
    assert report["redis"]["pid"] == started.statuses["redis"].pid


def test_broker_and_redis_do_real_work(started: Started) -> None:
    config = started.platform.config
    admin = AdminClient({"bootstrap.servers": config.bootstrap_servers})
    metadata = admin.list_topics(timeout=10)
    assert list(metadata.brokers) == [1]
    topic = f"infra-{uuid.uuid4().hex[:8]}"
    for future in admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)]).values():
        future.result(timeout=30)
    producer = Producer({"bootstrap.servers": config.bootstrap_servers, "acks": "all"})
    producer.produce(topic, key=b"k", value=b"hello")
    assert producer.flush(30) == 0
    consumer = Consumer(
        {
            "bootstrap.servers": config.bootstrap_servers,
            "group.id": f"g-{topic}",
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.subscribe([topic])
        deadline, message = time.monotonic() + 60, None
        while message is None and time.monotonic() < deadline:
            message = consumer.poll(1.0)
        assert message is not None and message.error() is None
        assert message.value() == b"hello"
    finally:
        consumer.close()
    client = redis.Redis.from_url(config.redis_url)
    try:
        client.set("infra:probe", "1")
        assert client.get("infra:probe") == b"1"
    finally:
        client.close()


def test_second_up_is_idempotent_and_fast(started: Started) -> None:
    for platform in (started.platform, Platform(started.platform.config)):  # same object, then a fresh one
        begin = time.monotonic()
        statuses = platform.up()
        assert time.monotonic() - begin < 5.0
        assert statuses["kafka"].pid == started.statuses["kafka"].pid
        assert statuses["redis"].pid == started.statuses["redis"].pid


@pytest.mark.parametrize("taken", ["kafka_port", "controller_port", "redis_port"])
def test_taken_port_raises_port_in_use(tmp_path: Path, taken: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = int(holder.getsockname()[1])
        platform = Platform(make_config(tmp_path / "state", **{taken: port}))
        with pytest.raises(PortInUseError) as caught:
            platform.up()
    message = str(caught.value)
    assert f"port {port} ({taken})" in message
    assert "(pid " in message
    statuses = platform.status()  # nothing left running after the failed up()
    assert not statuses["kafka"].up and statuses["kafka"].pid is None
    assert not statuses["redis"].up and statuses["redis"].pid is None


def test_broker_that_dies_reports_its_output(tmp_path: Path) -> None:
    platform = Platform(make_config(tmp_path / "state", kafka_heap="1k"))  # the JVM refuses to start
    with pytest.raises(ServiceDiedError) as caught:
        platform.up()
    message = str(caught.value)
    assert "exited during start-up" in message
    assert "heap" in message.lower()
    statuses = platform.status()  # the Redis this up() started was stopped again
    assert not statuses["redis"].up and statuses["redis"].pid is None
    assert port_is_free("127.0.0.1", platform.config.redis_port)


def test_down_then_warm_up_then_wipe(tmp_path: Path) -> None:
    platform = Platform(make_config(tmp_path / "state"))
    try:
        first = platform.up()
        cluster = first["kafka"].detail
        platform.down()
        for name in ("kafka", "redis"):
            pid = first[name].pid
            assert pid is not None and not _proc.pid_alive(pid)
        config = platform.config
        for port in (config.kafka_port, config.controller_port, config.redis_port):
            assert port_is_free("127.0.0.1", port)
        assert platform.status_json()["kafka"]["up"] is False

        again = platform.up()  # warm: jars cached, storage formatted
        assert again["kafka"].up and again["kafka"].detail == cluster  # same cluster id: data kept
        platform.down(wipe=True)
        assert not (config.state_dir / "kafka" / "data").exists()
    finally:
        platform.down()
