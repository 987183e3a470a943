"""A throwaway Kafka + Redis: started for one job (a replay, a benchmark, a test), removed when it ends.

>>> with start_throwaway() as platform:                # doctest: +SKIP
...     replay(platform.bootstrap_servers, platform.redis_url)

Two backends, both on free loopback ports, neither touching a platform already running:

- ``"testcontainers"``: two containers started with testcontainers' generic ``DockerContainer`` on the host
  network, Kafka's listeners and Redis bound to 127.0.0.1. The images are ``PlatformConfig.kafka_image`` /
  ``redis_image`` (official) when the engine has them or can pull them, else the ones built locally by
  :mod:`slipstream.infra.images`. Ryuk (testcontainers' reaper) is not used: its image needs a registry; the
  containers carry labels instead (:mod:`slipstream.infra.containers`) and :func:`remove_leftovers` removes those
  whose owning process is gone.
- ``"local"``: the local launcher (:class:`slipstream.infra.platform.Platform`: a Kafka JVM from the cached Maven
  Central jars and Debian's ``redis-server``) in a temporary state directory, deleted on ``close()``.

``"auto"`` picks testcontainers when a Docker engine answers (with ``start_engine=True`` it first tries to start one,
:func:`slipstream.infra.docker_engine.ensure_engine`, never installing), else, or if the containers cannot be had,
the local launcher. ``Throwaway.start_s`` is the wall time from the call to both services answering real requests
(a metadata request answered by broker 1, a Redis ``PING``): what a benchmark reads; :func:`measure_start` starts,
closes and returns it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from slipstream.infra import _proc, containers, kafka_props, probes
from slipstream.infra.config import DEFAULT_KAFKA_VERSION, REDIS_HOST, PlatformConfig
from slipstream.infra.docker_engine import engine_version, ensure_engine
from slipstream.infra.docker_platform import find_docker
from slipstream.infra.exceptions import (
    DependencyMissingError,
    InfraConfigError,
    InfraError,
    ServiceDiedError,
    ServiceTimeoutError,
)
from slipstream.infra.images import Images
from slipstream.infra.platform import Platform
from slipstream.infra.ports import free_ports, port_accepts

ThrowawayBackend = Literal["testcontainers", "local"]
BACKENDS = ("auto", "testcontainers", "local")
STARTUP_TIMEOUT_S = 120.0
REMOVE_TIMEOUT_S = 60.0
POLL_S = 0.1
STATE_PREFIX = "slipstream-throwaway-"
OWNER_FILE = "owner.pid"


def _quiet(_message: str) -> None:
    return None


@dataclass
class Throwaway:
    """A running throwaway Kafka + Redis. ``close()`` (or leaving ``with``) removes it; safe to call twice."""

    bootstrap_servers: str
    redis_url: str
    backend: ThrowawayBackend
    start_s: float
    _cleanup: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def close(self) -> None:
        """Stop and remove the containers or processes and delete the state directory, last started first.

        Already-gone containers, processes and directories are not errors. Every step runs even if one fails; the
        first failure is raised afterwards as :class:`InfraError`.
        """
        steps, self._cleanup = self._cleanup, []
        failures: list[str] = []
        for step in reversed(steps):
            try:
                step()
            except (InfraError, OSError) as exc:
                failures.append(str(exc))
        if failures:
            msg = f"closing the throwaway platform at {self.bootstrap_servers}: {'; '.join(failures)}"
            raise InfraError(msg)

    def __enter__(self) -> Throwaway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_throwaway(
    backend: Literal["auto", "testcontainers", "local"] = "auto",
    *,
    kafka_version: str = DEFAULT_KAFKA_VERSION,
    progress: Callable[[str], None] | None = None,
    start_engine: bool = False,
) -> Throwaway:
    """Start Kafka ``kafka_version`` (one KRaft node) and Redis on free loopback ports; return once both answer.

    If the start fails midway, whatever was started is removed before the error propagates.
    """
    say = progress or _quiet
    begin = time.monotonic()
    if backend not in BACKENDS:
        msg = f"backend {backend!r} is not one of {', '.join(BACKENDS)}"
        raise InfraConfigError(msg)
    PlatformConfig(kafka_version=kafka_version)  # validates the version before anything starts
    if backend == "local":
        return _start_local(kafka_version, say, begin)
    docker = _engine(say, start_engine=start_engine, required=backend == "testcontainers")
    if docker is None:
        say("no Docker engine answers: using the local launcher")
        return _start_local(kafka_version, say, begin)
    if backend == "testcontainers":
        return _start_containers(docker, kafka_version, say, begin)
    try:
        return _start_containers(docker, kafka_version, say, begin)
    except InfraError as exc:
        say(f"containers failed ({str(exc).splitlines()[0]}); using the local launcher")
        return _start_local(kafka_version, say, begin)


def measure_start(backend: Literal["auto", "testcontainers", "local"] = "auto", **kwargs: Any) -> float:
    """Start a throwaway platform, close it, return its ``start_s`` (for benchmarks)."""
    with start_throwaway(backend, **kwargs) as platform:
        return platform.start_s


def remove_leftovers(progress: Callable[[str], None] | None = None) -> list[str]:
    """Remove throwaway containers and local state directories whose owning process has exited (a killed job).

    Returns what was removed (container ids, directories). Throwaways of processes still running are left alone.
    """
    say = progress or _quiet
    removed: list[str] = []
    docker = find_docker()
    if docker is not None and engine_version(docker) is not None:
        fmt = f'{{{{.ID}}}} {{{{.Label "{containers.OWNER_LABEL}"}}}}'
        listed = _proc.run(
            [docker, "ps", "-a", "--filter", f"label={containers.LABEL}", "--format", fmt], timeout=REMOVE_TIMEOUT_S
        )
        for container_id, owner in containers.parse_owned(listed.stdout):
            if owner is None or not _proc.pid_alive(owner):
                say(f"removing leftover container {container_id} (owner pid {owner} is gone)")
                _remove_container(docker, container_id)
                removed.append(container_id)
    for state in Path(tempfile.gettempdir()).glob(f"{STATE_PREFIX}*"):
        owner = _proc.read_pidfile(state / OWNER_FILE)
        if owner is None or not _proc.pid_alive(owner):
            say(f"removing leftover local platform {state} (owner pid {owner} is gone)")
            Platform(PlatformConfig(state_dir=state, backend="local")).down(wipe=True)
            shutil.rmtree(state, ignore_errors=True)
            removed.append(str(state))
    return removed


# -- backends -----------------------------------------------------------------------------------------------


def _engine(say: Callable[[str], None], *, start_engine: bool, required: bool) -> str | None:
    """The ``docker`` CLI of an engine that answers, or None (raises instead when ``required``)."""
    docker = find_docker()
    if docker is not None and engine_version(docker) is not None:
        return docker
    if start_engine:
        try:
            return ensure_engine(say, install=False).docker
        except InfraError:
            if required:
                raise
            return None
    if required:
        msg = "backend 'testcontainers' needs a Docker engine and none answers `docker info`; pass start_engine=True"
        raise DependencyMissingError(msg)
    return None


def _start_local(kafka_version: str, say: Callable[[str], None], begin: float) -> Throwaway:
    state = Path(tempfile.mkdtemp(prefix=STATE_PREFIX))
    _proc.write_pidfile(state / OWNER_FILE, os.getpid())
    kafka_port, controller_port, redis_port = free_ports(3)
    config = PlatformConfig(
        state_dir=state,
        backend="local",
        kafka_version=kafka_version,
        kafka_port=kafka_port,
        controller_port=controller_port,
        redis_port=redis_port,
        startup_timeout_s=STARTUP_TIMEOUT_S,
    )
    platform = Platform(config, say)

    def stop() -> None:
        platform.down(wipe=True)
        shutil.rmtree(state, ignore_errors=True)

    try:
        platform.up()
    except BaseException:
        with contextlib.suppress(InfraError, OSError):
            stop()
        raise
    return Throwaway(config.bootstrap_servers, config.redis_url, "local", time.monotonic() - begin, [stop])


def _start_containers(docker: str, kafka_version: str, say: Callable[[str], None], begin: float) -> Throwaway:
    kafka_port, controller_port, redis_port = free_ports(3)
    config = PlatformConfig(
        kafka_version=kafka_version, kafka_port=kafka_port, controller_port=controller_port, redis_port=redis_port
    )
    images = Images(config, docker, say)
    kafka_image, redis_image = images.kafka(), images.redis()
    throwaway_id, owner = uuid.uuid4().hex[:10], os.getpid()
    kafka = containers.kafka_spec(
        config,
        kafka_image.name,
        ours=kafka_image.source == "local",
        cluster_id=kafka_props.new_cluster_id(),
        throwaway_id=throwaway_id,
        owner_pid=owner,
    )
    redis = containers.redis_spec(config, redis_image.name, throwaway_id=throwaway_id, owner_pid=owner)
    started: list[Any] = []

    def remove() -> None:
        for container in reversed(started):
            _dispose(docker, container)
        started.clear()

    try:
        say(f"starting {kafka.image} and {redis.image} on 127.0.0.1 (host network) ...")
        for spec in (kafka, redis):
            container = _container(spec)
            started.append(container)
            container.start()
        _wait_ready(config, started[0], started[1])
    except BaseException:
        with contextlib.suppress(InfraError, OSError):
            remove()
        raise
    return Throwaway(config.bootstrap_servers, config.redis_url, "testcontainers", time.monotonic() - begin, [remove])


def _container(spec: containers.ContainerSpec) -> Any:
    """A testcontainers ``DockerContainer`` for ``spec`` (not started). Ryuk off: its image needs a registry."""
    from testcontainers.core.config import testcontainers_config
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.transferable import Transferable

    testcontainers_config.ryuk_disabled = True
    container = DockerContainer(spec.image, env=dict(spec.env), name=spec.name).with_command(spec.command)
    kwargs: dict[str, Any] = {"network_mode": "host", "labels": dict(spec.labels)}
    if spec.entrypoint is not None:
        kwargs["entrypoint"] = spec.entrypoint
        script: Transferable = _entrypoint_bytes()
        container.with_copy_into_container(script, containers.INJECTED_ENTRYPOINT, 0o755)
    return container.with_kwargs(**kwargs)


def _entrypoint_bytes() -> bytes:
    from slipstream.infra.images import entrypoint_bytes

    return entrypoint_bytes()


def _wait_ready(config: PlatformConfig, kafka: Any, redis: Any) -> None:
    """Until broker 1 answers a metadata request and Redis a ``PING``; fail fast when a container exits."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    kafka_up = redis_up = False
    while True:
        for name, container in (("Kafka", kafka), ("Redis", redis)):
            wrapped = container.get_wrapped_container()
            wrapped.reload()
            if wrapped.status in ("exited", "dead"):
                msg = f"{name} container {wrapped.short_id} ({container.image}) exited during start-up; last lines:\n"
                raise ServiceDiedError(msg + _logs(container))
        if not redis_up:
            redis_up = probes.redis_version(REDIS_HOST, config.redis_port, timeout_s=1.0) is not None
        if not kafka_up and port_accepts(config.kafka_host, config.kafka_port):
            metadata = probes.kafka_metadata(config.bootstrap_servers, timeout_s=5.0)
            kafka_up = metadata is not None and kafka_props.NODE_ID in metadata.broker_ids
        if kafka_up and redis_up:
            return
        if time.monotonic() > deadline:
            waiting = " and ".join(n for n, up in (("Kafka", kafka_up), ("Redis", redis_up)) if not up)
            msg = f"{waiting} did not answer within {STARTUP_TIMEOUT_S:g} s; Kafka's last lines:\n{_logs(kafka)}"
            raise ServiceTimeoutError(msg)
        time.sleep(POLL_S)


def _logs(container: Any) -> str:
    try:
        out, err = container.get_logs()
    except Exception as exc:  # noqa: BLE001 - the logs only decorate another error
        return f"(logs unavailable: {exc})"
    text = (bytes(out) + bytes(err)).decode(errors="replace")
    return "\n".join(text.splitlines()[-30:])


def _dispose(docker: str, container: Any) -> None:
    """Remove a container (gone already is fine) and close testcontainers' client of it."""
    wrapped = container.get_wrapped_container()
    if wrapped is not None:
        _remove_container(docker, wrapped.id)
    with contextlib.suppress(Exception):  # the docker-py client's session; closing twice is harmless
        container.get_docker_client().client.close()


def _remove_container(docker: str, container_id: str) -> None:
    result = _proc.run([docker, "rm", "--force", "--volumes", container_id], timeout=REMOVE_TIMEOUT_S)
    if result.returncode != 0 and "No such container" not in result.stderr:
        msg = f"`docker rm --force {container_id}` failed (exit {result.returncode}): {result.stderr.strip()!r}"
        raise InfraError(msg)
