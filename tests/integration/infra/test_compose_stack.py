"""Slipstream's image and the compose stack for real: the images built (or found cached), the whole stack of
deploy/compose/docker-compose.yml up on free loopback ports, transactions through Kafka into the feature engine's
Redis state, one scored over HTTP by the scorer's container with those features and the registered champion, then
everything removed.

Cost (docs/deploy.md): the first build of slipstream/slipstream:local takes ~3 min (its dependency layer, kept in
the engine's cache outside the clone), a source change ~10 s, an unchanged checkout ~0.5 s (the inputs hash); the
stack starts and answers in ~30 s, and goes in ~4 s: the test takes ~45 s with the images cached.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from slipstream.app import Slipstream
from slipstream.features.definitions.fraud import FRAUD
from slipstream.infra import apt, probes
from slipstream.infra.compose import ComposeStack, ensure_compose, stack_file
from slipstream.infra.config import PlatformConfig
from slipstream.infra.exceptions import InfraError
from slipstream.infra.stack_images import APP_IMAGE, PROMETHEUS_IMAGE, StackImages
from slipstream.schemas.transport import EventProducer
from slipstream.settings import load_settings
from tests.conftest import KAFKA_VERSION, REPO, DockerEngine
from tests.integration.serving.fixtures import register, train_booster

pytestmark = pytest.mark.integration
# the processes of the stack that serve /metrics on a port of their own (the HTTP scorer serves it on its port)
METRICS = ("score-stream", "features", "shadow", "outcomes", "drift", "loop")
SERVICES = ("kafka", "redis", "scorer", "prometheus", *METRICS)

IMAGE_UID = 10001
CUSTOMER, TERMINAL = 596, 3156
READY_TIMEOUT_S = 180.0


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (all bound at once, so no two are the same)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def post(port: int, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, orjson.dumps(body), {"content-type": "application/json"})
        response = conn.getresponse()
        return response.status, orjson.loads(response.read())
    finally:
        conn.close()


def get_status(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def every_target_up(port: int, deadline: float) -> dict[str, str]:
    """The stack's Prometheus' targets (job -> instance) once it has scraped each of them, all up."""
    active: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                conn.request("GET", "/api/v1/targets?state=active")
                active = orjson.loads(conn.getresponse().read())["data"]["activeTargets"]
            finally:
                conn.close()
            if active and all(t["health"] == "up" for t in active):
                return {t["labels"]["job"]: t["labels"]["instance"] for t in active}
        time.sleep(1)
    seen = [(t["scrapeUrl"], t["health"], t["lastError"]) for t in active]
    pytest.fail(f"the stack's Prometheus did not scrape every target: {seen}")


def registered(app: Slipstream) -> str:
    """A small fraud model registered in the app's MLflow (in its state dir): what the scorer's container loads.
    Needs no broker, so it runs while the stack's Kafka starts."""
    rng = np.random.default_rng(7)
    vectors = {i: {name: float(rng.random()) for name in FRAUD.model_input} for i in range(300)}
    return register(app.model_registry, *train_booster(vectors, set(range(0, 300, 10)), seed=1))


def promoted(app: Slipstream, version: str) -> None:
    """The version made champion, the promotion on model-events (the topics applied first)."""
    app.apply_topics()
    producer = EventProducer(app.bootstrap_servers, app.contracts)
    try:
        app.model_registry.promote("fraud", version, producer=producer)
    finally:
        producer.close()


def give_to_image_user(state: Path) -> None:
    """The state dir (and the registry in it) to the image's user, as docs/deploy.md says to."""
    for path in [state, *state.rglob("*")]:
        os.chown(path, IMAGE_UID, IMAGE_UID, follow_symlinks=False)


def containers_of(docker: str, project: str) -> list[str]:
    result = subprocess.run(
        [docker, "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return result.stdout.split()


def states(docker: str, ids: list[str]) -> dict[str, tuple[str, int]]:
    """Each container's service name, state and restart count."""
    fmt = '{{index .Config.Labels "com.docker.compose.service"}} {{.State.Status}} {{.RestartCount}}'
    result = subprocess.run(
        [docker, "inspect", "--format", fmt, *ids], capture_output=True, text=True, check=True, timeout=30
    )
    found = {}
    for line in result.stdout.splitlines():
        name, status, restarts = line.split()
        found[name] = (status, int(restarts))
    return found


@contextlib.contextmanager
def running_stack(stack: ComposeStack, docker: str) -> Iterator[ComposeStack]:
    """The stack, removed afterwards (its containers' last lines printed on a failure); fails if a container is left."""
    try:
        yield stack
    except BaseException:
        print(stack.logs())
        raise
    finally:
        try:
            stack.down(timeout_s=5)
        finally:
            left = containers_of(docker, stack.project)
            if left:
                subprocess.run([docker, "rm", "-f", *left], capture_output=True, timeout=60, check=False)
                pytest.fail(f"`compose down` left containers {left} of project {stack.project}")


def test_the_stack_scores_a_transaction_with_the_engines_features(docker_engine: DockerEngine, tmp_path: Path) -> None:
    docker = docker_engine.docker
    begin = time.monotonic()
    builder = StackImages(PlatformConfig(kafka_version=KAFKA_VERSION), docker, print)
    # Ours, not the configured apache/kafka: the stack passes kafka-entrypoint.sh its settings.
    kafka_image, redis_image = builder.local_kafka(), builder.local_redis()
    app_image, prometheus_image = builder.app(REPO), builder.prometheus()
    compose = ensure_compose(docker, print, install=apt.can_install())
    built_s = time.monotonic() - begin
    assert app_image.name == APP_IMAGE
    assert prometheus_image.name == PROMETHEUS_IMAGE

    kafka_port, controller_port, redis_port, scorer_port, prometheus_port = free_ports(5)
    metrics_ports = dict(zip(METRICS, free_ports(len(METRICS)), strict=True))
    state = tmp_path / "state"
    state.mkdir()
    project = f"slipstream-it-{uuid.uuid4().hex[:8]}"
    env = {
        "KAFKA_IMAGE": kafka_image.name,
        "REDIS_IMAGE": redis_image.name,
        "KAFKA_PORT": str(kafka_port),
        "KAFKA_CONTROLLER_PORT": str(controller_port),
        "REDIS_PORT": str(redis_port),
        "SCORER_PORT": str(scorer_port),
        "PROMETHEUS_PORT": str(prometheus_port),
        "SLIPSTREAM_STATE_DIR": str(state),
    } | {f"{name.upper().replace('-', '_')}_METRICS_PORT": str(port) for name, port in metrics_ports.items()}
    if os.geteuid() != 0:  # not root: the containers run as this user, who owns the state dir
        env |= {"SLIPSTREAM_UID": str(os.getuid()), "SLIPSTREAM_GID": str(os.getgid())}
    bootstrap, redis_url = f"127.0.0.1:{kafka_port}", f"redis://127.0.0.1:{redis_port}/0"
    stack = ComposeStack(compose, stack_file(REPO), project, env)
    app = Slipstream(load_settings(kafka_bootstrap_servers=bootstrap, redis_url=redis_url, state_dir=state))
    with running_stack(stack, docker), ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        registering = pool.submit(registered, app)
        stack.up("kafka", "redis")
        deadline = started + READY_TIMEOUT_S
        while probes.kafka_metadata(bootstrap, timeout_s=2.0) is None:
            if time.monotonic() > deadline:
                msg = f"the stack's broker at {bootstrap} did not answer within {READY_TIMEOUT_S:g} s"
                raise InfraError(msg)
            time.sleep(0.2)
        version = registering.result()
        promoted(app, version)
        if os.geteuid() == 0:
            give_to_image_user(state)
        stack.up()

        now = datetime.now(UTC).replace(microsecond=0)
        out = EventProducer(bootstrap, app.contracts)
        try:
            for i in range(3):
                out.send(
                    "transactions",
                    {
                        "transaction_id": 9000 + i,
                        "customer_id": CUSTOMER,
                        "terminal_id": TERMINAL,
                        "amount": 10.0 + i,
                        "event_time": now - timedelta(seconds=3 - i),
                    },
                )
        finally:
            out.close()
        request = {
            "transaction_id": 9003,
            "customer_id": CUSTOMER,
            "terminal_id": TERMINAL,
            "amount": 57.16,
            "event_time": now.isoformat(),
        }
        answer: Any = None
        while answer is None or answer["features"]["CUSTOMER_ID_NB_TX_1DAY_WINDOW"] < 4:
            if time.monotonic() > deadline:
                pytest.fail(f"no score with the engine's features within {READY_TIMEOUT_S:g} s (last answer {answer})")
            with contextlib.suppress(OSError, http.client.HTTPException):
                status, body = post(scorer_port, "/v1/fraud/score", request)
                answer = body if status == 200 else answer
            time.sleep(0.3)
        answered_s = time.monotonic() - started

        assert answer["model"] == {"name": "fraud", "version": version}
        assert 0.0 <= answer["score"] <= 1.0
        assert answer["features"]["CUSTOMER_ID_NB_TX_1DAY_WINDOW"] == 4  # three through the engine + this one
        assert answer["features"]["CUSTOMER_ID_AVG_AMOUNT_1DAY_WINDOW"] == pytest.approx((10 + 11 + 12 + 57.16) / 4)
        assert get_status(prometheus_port, "/-/ready") == 200
        scraped = every_target_up(prometheus_port, deadline + 60)
        assert scraped == {"slipstream-serve": f"127.0.0.1:{scorer_port}"} | {
            f"slipstream-{name}": f"127.0.0.1:{port}" for name, port in metrics_ports.items()
        }
        running = states(docker, stack.container_ids())
        assert running == {name: ("running", 0) for name in SERVICES}
        print(
            f"\nimages ready in {built_s:.1f} s (slipstream built: {app_image.built}, {app_image.seconds:.1f} s); "
            f"stack up and a score with the engine's features in {answered_s:.1f} s"
        )
