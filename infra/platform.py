"""The platform as one object: Kafka and Redis, up, down, status, on the local or the Docker backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from slipstream.infra.base import ServiceStatus
from slipstream.infra.config import PlatformConfig
from slipstream.infra.docker_platform import DockerPlatform, compose_available, docker_engine_available
from slipstream.infra.exceptions import InfraError
from slipstream.infra.kafka_local import LocalKafka
from slipstream.infra.redis_local import LocalRedis

ResolvedBackend = Literal["local", "docker"]


def _quiet(_message: str) -> None:
    return None


class Platform:
    """Start, stop and inspect Slipstream's Kafka broker and Redis.

    ``backend="auto"`` uses Docker when an engine (with Compose) answers, except that a local platform that
    is already running keeps being used, so ``down`` always stops what ``up`` started. ``progress`` receives
    short human messages ("resolving Kafka 4.3.1 jars from Maven Central ...", "waiting for broker ...").
    """

    def __init__(
        self,
        config: PlatformConfig,
        progress: Callable[[str], None] | None = None,
        *,
        docker_available: Callable[[], bool] | None = None,
    ) -> None:
        self.config = config
        self._progress = progress or _quiet
        self._docker_available = docker_available or (lambda: docker_engine_available() and compose_available())
        self.kafka = LocalKafka(config, self._progress)
        self.redis = LocalRedis(config, self._progress)
        self.docker = DockerPlatform(config, self._progress)
        self._backend: ResolvedBackend | None = None

    @property
    def backend_name(self) -> ResolvedBackend:
        """``"docker"`` or ``"local"``, resolved once per instance."""
        if self._backend is None:
            self._backend = self._resolve_backend()
        return self._backend

    def up(self) -> dict[str, ServiceStatus]:
        """Start Redis and Kafka (idempotent) and return once both answer real requests.

        Locally the broker JVM is launched first, Redis is started while it boots, then the broker is awaited.
        If either fails, whatever this call started is stopped again before the error propagates.
        """
        if self.backend_name == "docker":
            return self.docker.up()
        started: list[LocalKafka | LocalRedis] = []
        try:
            kafka_was_running = self.kafka.running_pid() is not None
            kafka_pid = self.kafka.start()
            if not kafka_was_running:
                started.append(self.kafka)
            redis_was_running = self.redis.running_pid() is not None
            redis = self.redis.up()
            if not redis_was_running:
                started.append(self.redis)
            kafka = self.kafka.wait_ready(kafka_pid)
        except (InfraError, KeyboardInterrupt):
            for service in started:
                service.down()
            raise
        return {"kafka": kafka, "redis": redis}

    def down(self, wipe: bool = False) -> None:
        """Stop both services; with ``wipe``, delete Kafka's data so the next ``up`` starts a fresh cluster."""
        if self.backend_name == "docker":
            self.docker.down(wipe=wipe)
            return
        self.redis.down()
        if wipe:
            self.kafka.wipe()
        else:
            self.kafka.down()

    def status(self) -> dict[str, ServiceStatus]:
        if self.backend_name == "docker":
            return self.docker.status()
        return {"kafka": self.kafka.status(), "redis": self.redis.status()}

    def status_json(self) -> dict[str, dict[str, object]]:
        """``{"kafka": {"up", "bootstrap_servers", "version", ...}, "redis": {"up", "url", "version", ...}}``."""
        statuses = self.status()
        kafka, redis = statuses["kafka"], statuses["redis"]
        return {
            "kafka": {
                "up": kafka.up,
                "bootstrap_servers": kafka.address,
                "version": kafka.version,
                "backend": kafka.backend,
                "pid": kafka.pid,
                "detail": kafka.detail,
            },
            "redis": {
                "up": redis.up,
                "url": redis.address,
                "version": redis.version,
                "backend": redis.backend,
                "pid": redis.pid,
                "detail": redis.detail,
            },
        }

    def _resolve_backend(self) -> ResolvedBackend:
        if self.config.backend == "local":
            return "local"
        if self.config.backend == "docker":
            return "docker"
        if self.kafka.running_pid() is not None or self.redis.running_pid() is not None:
            return "local"
        return "docker" if self._docker_available() else "local"
