"""Kafka and Redis for the integration tests, from one fixture.

Order of preference:
1. ``KAFKA_BOOTSTRAP_SERVERS`` and ``REDIS_URL`` when both are set (CI services, a shared dev cluster);
2. with ``SLIPSTREAM_TEST_BACKEND=testcontainers``: a throwaway platform in containers
   (:func:`slipstream.infra.throwaway.start_throwaway`: the official images when the engine has or can pull them,
   else images built locally; host network, loopback only), starting the Docker engine first when this user may;
3. otherwise the local launcher from ``infra/`` (Maven Central jars + Debian's redis-server), on ports of its own and
   a state directory of its own, so it never touches a platform started with ``slipstream infra up``. A Docker engine
   that happens to answer does not change this: containers are opt-in.

The ``docker_engine`` fixture is for the tests of containers themselves: it starts the engine (installing Debian's
docker.io when root and it is missing) and makes the images available, and fails the run when it cannot.
A service that cannot be had fails the run: integration tests never skip.
Every test gets its own uuid-named set of topics (see ``contracts``).

No Kafka client outlives the broker: a client that is still open when the broker stops reconnects, and logs
"Connection refused", until the process exits. Two things kept clients open past their test: the engine and the
scorers freeze the collector's heap (``gc.freeze``) in the test process too, which makes every reference cycle alive
at that moment immortal (``_collector_as_it_was`` undoes it after each test); and a client a test leaves to the
collector stays open until it runs (``_close_kafka_clients`` closes what is left before the broker stops).
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer

from slipstream.infra.config import PlatformConfig
from slipstream.infra.docker_engine import ensure_engine
from slipstream.infra.exceptions import InfraError
from slipstream.infra.images import Image, Images
from slipstream.infra.platform import Platform
from slipstream.infra.throwaway import start_throwaway
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.exceptions import SlipstreamError
from slipstream.schemas.topics import TopicCatalog
from slipstream.schemas.transport import TopicAdmin

REPO = Path(__file__).resolve().parents[1]
TEST_STATE_DIR = REPO / ".slipstream" / "test-platform"
KAFKA_VERSION = os.environ.get("SLIPSTREAM_KAFKA_VERSION", "4.3.1")
TEST_BACKENDS = ("local", "testcontainers")


@dataclass(frozen=True)
class Services:
    bootstrap_servers: str
    redis_url: str
    how: str
    kafka_libs: Path | None = None


def _from_environment() -> Services | None:
    kafka, redis_url = os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), os.environ.get("REDIS_URL")
    if kafka and redis_url:
        return Services(kafka, redis_url, "environment")
    return None


def _close_kafka_clients() -> None:
    """Before the broker stops: collect the clients the tests dropped, then close the ones still open (queued records
    are dropped: every test is over)."""
    gc.unfreeze()
    gc.collect()
    for client in [obj for obj in gc.get_objects() if isinstance(obj, Producer | Consumer)]:
        # RuntimeError: closed already; SlipstreamError: a secured client's refused login, raised by its error_cb
        with contextlib.suppress(KafkaException, RuntimeError, SlipstreamError):
            if isinstance(client, Producer):
                client.purge()
            client.close()


@pytest.fixture(autouse=True)
def _collector_as_it_was() -> Iterator[None]:
    """Undo, after each test, what an in-process engine or scorer does to the cyclic collector: right for a process
    of their own (``gc.freeze`` of the start-up heap, higher thresholds), but in the test process it would keep
    everything then alive — the test's clients among it — until the session ends, and slow down later tests' GC."""
    thresholds = gc.get_threshold()
    yield
    if gc.get_freeze_count() or gc.get_threshold() != thresholds:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        gc.collect()


def _from_testcontainers() -> Iterator[Services]:
    with start_throwaway("testcontainers", kafka_version=KAFKA_VERSION, start_engine=True) as platform:
        try:
            yield Services(platform.bootstrap_servers, platform.redis_url, "testcontainers")
        finally:
            _close_kafka_clients()


def _from_local_launcher() -> Iterator[Services]:
    config = PlatformConfig(
        state_dir=TEST_STATE_DIR,
        backend="local",
        kafka_version=KAFKA_VERSION,
        kafka_port=int(os.environ.get("SLIPSTREAM_TEST_KAFKA_PORT", "19092")),
        controller_port=int(os.environ.get("SLIPSTREAM_TEST_CONTROLLER_PORT", "19093")),
        redis_port=int(os.environ.get("SLIPSTREAM_TEST_REDIS_PORT", "16379")),
        startup_timeout_s=180,
    )
    platform = Platform(config)
    already_up = all(status.up for status in platform.status().values())  # another test run is using it
    platform.up()
    libs = config.kafka_cache_dir / "libs"
    try:
        yield Services(config.bootstrap_servers, config.redis_url, "local launcher", libs)
    finally:
        _close_kafka_clients()
        if not already_up and os.environ.get("SLIPSTREAM_TEST_KEEP_SERVICES") != "1":
            platform.down()  # stop only what this run started


def _test_backend() -> str:
    backend = os.environ.get("SLIPSTREAM_TEST_BACKEND") or "local"
    if backend not in TEST_BACKENDS:
        pytest.fail(f"SLIPSTREAM_TEST_BACKEND={backend!r} is not one of {', '.join(TEST_BACKENDS)}", pytrace=False)
    return backend


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    given = _from_environment()
    if given is not None:
        yield given
    elif _test_backend() == "testcontainers":
        yield from _from_testcontainers()
    else:
        yield from _from_local_launcher()


@dataclass(frozen=True)
class DockerEngine:
    """A Docker engine that answers, and the Kafka and Redis images a throwaway platform will run."""

    docker: str
    version: str
    kafka_image: Image
    redis_image: Image
    seconds: float


@pytest.fixture(scope="session")
def docker_engine() -> DockerEngine:
    """Start the engine (and install docker.io, as root, when missing) and make the images available; fail if not.

    On a fresh machine: ~13 s to install and start the engine, ~60 s to build the local images (debootstrap 35 s,
    Kafka 19 s, Redis 4 s); afterwards ~0.3 s (the engine answers, the images carry the right inputs hash)."""
    begin = time.monotonic()
    try:
        engine = ensure_engine(install=True)
        images = Images(PlatformConfig(kafka_version=KAFKA_VERSION), engine.docker)
        kafka_image, redis_image = images.kafka(), images.redis()
    except InfraError as exc:
        pytest.fail(f"the Docker engine or its images cannot be had: {exc}", pytrace=False)
    return DockerEngine(engine.docker, engine.version, kafka_image, redis_image, time.monotonic() - begin)


@pytest.fixture
def contracts(services: Services) -> Iterator[Contracts]:
    """This repo's contracts under a fresh uuid prefix, with every declared topic created (and deleted after)."""
    base = Contracts.default()
    catalog = TopicCatalog(f"t-{uuid.uuid4().hex[:10]}.")
    scoped = Contracts(catalog, base.registry, base.framing)
    admin = TopicAdmin(services.bootstrap_servers)
    admin.apply(catalog)
    yield scoped
    admin.delete(admin.matching(catalog.prefix))  # the engine's own too
    with contextlib.suppress(SlipstreamError):  # best effort: a group still held by a member expires by itself
        admin.delete_groups(admin.groups(catalog.prefix), patience_s=0)
