"""Throwaway platforms for real: containers on a real Docker engine (images built here when no registry answers)
and the local launcher, each on free loopback ports; what ``close()`` removes is checked with ``docker ps`` and the
processes' pids.

Cost on a machine where the engine runs and the images are built: ~5 s per container platform, ~7 s per local one;
the ``docker_engine`` fixture adds ~13 s (engine install + start) and ~60 s (image builds) on a fresh machine, once.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
import redis
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from slipstream.infra import _proc, containers, throwaway
from slipstream.infra.exceptions import ServiceTimeoutError
from slipstream.infra.throwaway import Throwaway, remove_leftovers, start_throwaway
from tests.conftest import DockerEngine

pytestmark = pytest.mark.integration


def our_containers(docker: str) -> list[str]:
    """Ids of the throwaway containers this test process owns, running or not."""
    result = subprocess.run(
        [docker, "ps", "-aq", "--filter", f"label={containers.OWNER_LABEL}={os.getpid()}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return result.stdout.split()


def local_states() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob(f"{throwaway.STATE_PREFIX}*"))


def use_both_services(platform: Throwaway) -> None:
    """A topic with 3 partitions, a record produced and consumed from it; SET and GET in Redis."""
    topic = f"throwaway-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": platform.bootstrap_servers})
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result(timeout=30)
    assert len(admin.list_topics(topic, timeout=10).topics[topic].partitions) == 3
    producer = Producer({"bootstrap.servers": platform.bootstrap_servers})
    producer.produce(topic, key=b"k", value=b"hello", partition=2)
    assert producer.flush(30) == 0
    consumer = Consumer(
        {
            "bootstrap.servers": platform.bootstrap_servers,
            "group.id": f"g-{topic}",
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.subscribe([topic])
        message = None
        for _ in range(60):
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                break
        assert message is not None and message.error() is None
        assert (message.partition(), message.key(), message.value()) == (2, b"k", b"hello")
    finally:
        consumer.close()
    client = redis.Redis.from_url(platform.redis_url)
    try:
        client.set("throwaway:key", "value")
        assert client.get("throwaway:key") == b"value"
    finally:
        client.close()


def test_containers_work_and_close_removes_them_even_after_an_exception(docker_engine: DockerEngine) -> None:
    assert our_containers(docker_engine.docker) == []
    messages: list[str] = []
    with pytest.raises(LookupError, match="inside with"):
        with start_throwaway("testcontainers", progress=messages.append) as platform:
            assert platform.backend == "testcontainers"
            assert platform.bootstrap_servers.startswith("127.0.0.1:")
            assert platform.redis_url.startswith("redis://127.0.0.1:")
            assert 0 < platform.start_s < 60
            assert len(our_containers(docker_engine.docker)) == 2
            use_both_services(platform)
            msg = "inside with"
            raise LookupError(msg)
    assert our_containers(docker_engine.docker) == []
    platform.close()  # again: gone already is not an error
    assert any("host network" in message for message in messages)


def test_local_works_and_close_stops_its_processes() -> None:
    before = local_states()
    with start_throwaway("local") as platform:
        assert platform.backend == "local"
        (state,) = local_states() - before
        pids = [_proc.read_pidfile(state / "kafka" / "kafka.pid"), _proc.read_pidfile(state / "redis" / "redis.pid")]
        assert all(pid is not None and _proc.pid_alive(pid) for pid in pids)
        use_both_services(platform)
    assert not any(pid is not None and _proc.pid_alive(pid) for pid in pids)
    assert not state.exists()
    platform.close()


def test_a_start_that_fails_midway_removes_what_it_started(
    docker_engine: DockerEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never_ready(*_args: object) -> None:
        msg = "not ready (test)"
        raise ServiceTimeoutError(msg)

    monkeypatch.setattr(throwaway, "_wait_ready", never_ready)
    with pytest.raises(ServiceTimeoutError, match="not ready"):
        start_throwaway("testcontainers")
    assert our_containers(docker_engine.docker) == []


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_remove_leftovers_removes_only_what_a_dead_process_left(docker_engine: DockerEngine) -> None:
    docker = docker_engine.docker
    image = docker_engine.redis_image.name

    def create(owner: int) -> str:
        """A container (created, never started) labelled as a throwaway's of ``owner``; its short id."""
        labels = ["--label", f"{containers.LABEL}=1", "--label", f"{containers.OWNER_LABEL}={owner}"]
        cmd = [docker, "create", "--network", "host", *labels, image, "redis-server", "--bind", "127.0.0.1"]
        return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=30).stdout.strip()[:12]

    orphan, alive = create(_dead_pid()), create(os.getpid())
    state = Path(tempfile.mkdtemp(prefix=throwaway.STATE_PREFIX))
    _proc.write_pidfile(state / throwaway.OWNER_FILE, _dead_pid())
    try:
        removed = remove_leftovers()
        assert orphan in removed and str(state) in removed
        assert not state.exists()
        assert our_containers(docker) == [alive]
    finally:
        subprocess.run([docker, "rm", "-f", orphan, alive], capture_output=True, check=False, timeout=30)
