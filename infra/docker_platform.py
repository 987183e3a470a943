"""The same platform on a Docker engine: ``apache/kafka`` and ``redis:7-alpine`` under Docker Compose.

Chosen when ``backend="docker"``, or ``"auto"`` and ``docker info`` answers. Readiness is the same real
metadata request and ``PING`` as the local backend; the Compose file is ``infra/docker-compose.yml``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from slipstream.infra import _proc, probes
from slipstream.infra.base import ServiceStatus
from slipstream.infra.config import REDIS_HOST, PlatformConfig
from slipstream.infra.exceptions import DependencyMissingError, InfraError, ServiceTimeoutError
from slipstream.infra.kafka_props import NODE_ID

PROJECT = "slipstream"
COMPOSE_FILE = Path(__file__).with_name("docker-compose.yml")
ENGINE_TIMEOUT_S = 5.0
COMPOSE_TIMEOUT_S = 900.0
POLL_S = 0.5
BACKEND = "docker"


def _quiet(_message: str) -> None:
    return None


def find_docker() -> str | None:
    return _proc.which("docker", "/usr/bin", "/usr/local/bin", "/opt/homebrew/bin")


def docker_engine_available(docker: str | None = None, timeout_s: float = ENGINE_TIMEOUT_S) -> bool:
    """True if a Docker engine answers ``docker info`` within ``timeout_s`` (a CLI alone is not enough)."""
    docker = docker or find_docker()
    if docker is None:
        return False
    try:
        result = _proc.run([docker, "info", "--format", "{{.ServerVersion}}"], timeout=timeout_s)
    except InfraError:
        return False
    return result.returncode == 0 and bool(result.stdout.strip())


def compose_available(docker: str | None = None, timeout_s: float = ENGINE_TIMEOUT_S) -> bool:
    """True if the Compose v2 plugin answers ``docker compose version``."""
    docker = docker or find_docker()
    if docker is None:
        return False
    try:
        result = _proc.run([docker, "compose", "version"], timeout=timeout_s)
    except InfraError:
        return False
    return result.returncode == 0


def compose_env(config: PlatformConfig) -> dict[str, str]:
    """The variables ``docker-compose.yml`` substitutes."""
    return {
        "KAFKA_VERSION": config.kafka_version,
        "KAFKA_HOST": config.kafka_host,
        "KAFKA_PORT": str(config.kafka_port),
        "KAFKA_HEAP": config.kafka_heap,
        "REDIS_PORT": str(config.redis_port),
    }


def compose_command(docker: str, *args: str, compose_file: Path = COMPOSE_FILE) -> list[str]:
    """``docker compose -f <file> -p slipstream <args...>``."""
    return [docker, "compose", "-f", str(compose_file), "-p", PROJECT, *args]


def up_command(docker: str) -> list[str]:
    """``compose up -d``: creates what is missing, recreates what changed (e.g. the version), else no-op."""
    return compose_command(docker, "up", "-d")


def down_command(docker: str, *, wipe: bool) -> list[str]:
    return compose_command(docker, "down", "--volumes") if wipe else compose_command(docker, "down")


class DockerPlatform:
    """Kafka and Redis as Compose services of project ``slipstream``."""

    def __init__(self, config: PlatformConfig, progress: Callable[[str], None] = _quiet) -> None:
        self.config = config
        self._progress = progress

    def up(self) -> dict[str, ServiceStatus]:
        """``compose up -d`` (idempotent), then wait for a metadata answer and a ``PING``."""
        self._compose(up_command(self._docker()), f"starting apache/kafka:{self.config.kafka_version} and redis ...")
        self._progress("waiting for broker ...")
        deadline = time.monotonic() + self.config.startup_timeout_s
        while True:
            statuses = self.status()
            if all(status.up for status in statuses.values()):
                return statuses
            if time.monotonic() > deadline:
                waiting = ", ".join(name for name, status in statuses.items() if not status.up)
                logs = self._logs()
                msg = f"{waiting} did not become ready within {self.config.startup_timeout_s:g} s; logs:\n{logs}"
                raise ServiceTimeoutError(msg)
            time.sleep(POLL_S)

    def down(self, *, wipe: bool = False) -> None:
        self._compose(down_command(self._docker(), wipe=wipe), "stopping the slipstream containers ...")

    def status(self) -> dict[str, ServiceStatus]:
        metadata = probes.kafka_metadata(self.config.bootstrap_servers, timeout_s=2.0)
        kafka_up = metadata is not None and NODE_ID in metadata.broker_ids
        redis_version = probes.redis_version(REDIS_HOST, self.config.redis_port, timeout_s=1.0)
        return {
            "kafka": ServiceStatus(
                name="kafka",
                up=kafka_up,
                address=self.config.bootstrap_servers,
                version=self.config.kafka_version,
                backend=BACKEND,
                pid=None,
                detail=f"image apache/kafka:{self.config.kafka_version}",
            ),
            "redis": ServiceStatus(
                name="redis",
                up=redis_version is not None,
                address=self.config.redis_url,
                version=redis_version,
                backend=BACKEND,
                pid=None,
                detail="image redis:7-alpine",
            ),
        }

    def _docker(self) -> str:
        docker = find_docker()
        if docker is None:
            msg = "`docker` not found on PATH; install Docker or use backend='local'"
            raise DependencyMissingError(msg)
        if not docker_engine_available(docker):
            msg = f"no Docker engine answers `{docker} info`; start Docker or use backend='local'"
            raise DependencyMissingError(msg)
        if not compose_available(docker):
            msg = f"{docker!r} has no `compose` command; install the Docker Compose v2 plugin or use backend='local'"
            raise DependencyMissingError(msg)
        return docker

    def _compose(self, cmd: list[str], message: str) -> None:
        self._progress(message)
        env = _proc.inherited_env(compose_env(self.config))
        result = _proc.run(cmd, timeout=COMPOSE_TIMEOUT_S, env=env)
        if result.returncode != 0:
            output = "\n".join((result.stdout + result.stderr).strip().splitlines()[-30:])
            msg = f"{' '.join(cmd)!r} failed (exit {result.returncode}):\n{output}"
            raise InfraError(msg)

    def _logs(self) -> str:
        docker = find_docker()
        if docker is None:
            return "(docker not found)"
        cmd = compose_command(docker, "logs", "--no-color", "--tail", "30")
        try:
            result = _proc.run(cmd, timeout=30, env=_proc.inherited_env(compose_env(self.config)))
        except InfraError as exc:
            return str(exc)
        return (result.stdout + result.stderr).strip()
