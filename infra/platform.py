"""The platform as one object: Kafka and Redis, up, down, status, on the local or the Docker backend."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Literal

from slipstream.infra.base import ServiceStatus
from slipstream.infra.config import PlatformConfig
from slipstream.infra.docker_platform import DockerPlatform, compose_available, docker_engine_available
from slipstream.infra.exceptions import InfraError
from slipstream.infra.kafka_cluster import LocalKafkaCluster, node_dirs, running_nodes, stop_nodes, wipe_nodes
from slipstream.infra.kafka_local import LocalKafka
from slipstream.infra.redis_cluster_local import LocalRedisCluster
from slipstream.infra.redis_local import LocalRedis

ResolvedBackend = Literal["local", "docker"]


def _quiet(_message: str) -> None:
    return None


class Platform:
    """Start, stop and inspect Slipstream's Kafka broker and Redis.

    ``backend="auto"`` uses Docker when an engine (with Compose) answers, except that a local platform that
    is already running keeps being used, so ``down`` always stops what ``up`` started. ``progress`` receives
    short human messages ("resolving Kafka 4.3.1 jars from Maven Central ...", "waiting for broker ...").

    With ``config.brokers`` 3 (local backend only) Kafka is a cluster of three KRaft nodes (:attr:`kafka_cluster`,
    :mod:`slipstream.infra.kafka_cluster`); ``up``/``down``/``status`` cover every node, and a chaos drill stops
    and starts one node at a time with :meth:`stop_broker`, :meth:`start_broker` and :meth:`restart_broker`.
    ``down`` stops cluster nodes running from the state directory whatever ``brokers`` says.
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
        self.kafka_cluster = LocalKafkaCluster(config, self._progress) if config.brokers > 1 else None
        # With config.redis_cluster, three local masters (a chaos drill: self.redis.ports, stop_node, start_node).
        self.redis: LocalRedis | LocalRedisCluster = (
            LocalRedisCluster(config, self._progress) if config.redis_cluster else LocalRedis(config, self._progress)
        )
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
        if self.kafka_cluster is not None:
            return self._up_cluster(self.kafka_cluster)
        self._refuse_other_kafka()
        started: list[LocalKafka | LocalRedis | LocalRedisCluster] = []
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
        # Whatever `brokers` says now: cluster nodes started with another setting are ours to stop (and wipe) too.
        kafka_home = self.config.kafka_state_dir.expanduser().resolve()
        if wipe:
            wipe_nodes(kafka_home, self._progress)
        else:
            stop_nodes(kafka_home, self._progress)

    # -- one Kafka node at a time (chaos drills; a cluster of brokers >= 3 only) -------------------------------

    def stop_broker(self, node_id: int) -> None:
        """Stop Kafka node ``node_id`` (1..brokers): SIGTERM, then wait until its JVM has exited.

        See :meth:`LocalKafkaCluster.stop_broker`; :class:`InfraError` on a single-node platform."""
        self._cluster_for("stop_broker").stop_broker(node_id)

    def start_broker(self, node_id: int, *, in_sync: bool = True, timeout_s: float | None = None) -> ServiceStatus:
        """Start Kafka node ``node_id`` again; return once the metadata lists it as a live broker (and, with
        ``in_sync``, it is back in every ISR it belongs to). See :meth:`LocalKafkaCluster.start_broker`."""
        return self._cluster_for("start_broker").start_broker(node_id, in_sync=in_sync, timeout_s=timeout_s)

    def restart_broker(self, node_id: int, *, in_sync: bool = True, timeout_s: float | None = None) -> ServiceStatus:
        """:meth:`stop_broker` then :meth:`start_broker`."""
        return self._cluster_for("restart_broker").restart_broker(node_id, in_sync=in_sync, timeout_s=timeout_s)

    def _cluster_for(self, operation: str) -> LocalKafkaCluster:
        if self.kafka_cluster is None or self.backend_name != "local":
            brokers = self.config.brokers
            msg = f"{operation} needs a local Kafka cluster (brokers >= 3); this platform has brokers {brokers}"
            raise InfraError(msg)
        return self.kafka_cluster

    def _up_cluster(self, cluster: LocalKafkaCluster) -> dict[str, ServiceStatus]:
        """Launch the missing nodes, start Redis while they boot, wait for all; undo what this call started on error."""
        if (pid := self.kafka.running_pid()) is not None:
            msg = (
                f"a single-node Kafka (pid {pid}) runs from {self.kafka.home}; stop it (`slipstream infra down`) "
                f"before starting brokers {self.config.brokers}"
            )
            raise InfraError(msg)
        was_running = {n for n, node in cluster.nodes.items() if node.running_pid() is not None}
        redis_was_running = self.redis.running_pid() is not None
        try:
            cluster.start()
            redis = self.redis.up()
            kafka = cluster.wait_ready()
            nodes = cluster.node_statuses()
        except (InfraError, KeyboardInterrupt):
            if not was_running:
                cluster.down()
            for node_id in sorted(set(cluster.nodes) - was_running):
                if was_running and cluster.nodes[node_id].running_pid() is not None:
                    cluster.stop_broker(node_id)
            if not redis_was_running:
                self.redis.down()
            raise
        return {"kafka": kafka, **{status.name: status for status in nodes.values()}, "redis": redis}

    def _refuse_other_kafka(self) -> None:
        """A single node cannot start while cluster nodes hold the same state directory and ports."""
        running = running_nodes(self.config.kafka_state_dir.expanduser().resolve())
        if running:
            msg = (
                f"Kafka cluster nodes {sorted(running)} run from {self.config.kafka_state_dir}; pass brokers "
                f"{len(running)} (--brokers, SLIPSTREAM_KAFKA_BROKERS) or stop them (`slipstream infra down`)"
            )
            raise InfraError(msg)

    def status(self) -> dict[str, ServiceStatus]:
        if self.backend_name == "docker":
            return self.docker.status()
        cluster = self.kafka_cluster or self._cluster_running_anyway()
        if cluster is not None:
            nodes = {status.name: status for status in cluster.node_statuses().values()}
            return {"kafka": cluster.status(), **nodes, "redis": self.redis.status()}
        return {"kafka": self.kafka.status(), "redis": self.redis.status()}

    def _cluster_running_anyway(self) -> LocalKafkaCluster | None:
        """With brokers 1 and no single node running: the cluster whose nodes run from the state directory, if any
        (started with --brokers 3), so that `infra status` shows what runs whatever SLIPSTREAM_KAFKA_BROKERS says."""
        if self.kafka.running_pid() is not None:
            return None
        kafka_home = self.config.kafka_state_dir.expanduser().resolve()
        if not running_nodes(kafka_home):
            return None
        brokers = max(node_dirs(kafka_home))
        try:
            return LocalKafkaCluster(replace(self.config, brokers=brokers), self._progress)
        except InfraError:  # the node directories do not fit this config's ports
            return None

    def status_json(self) -> dict[str, dict[str, object]]:
        """``{"kafka": {"up", "bootstrap_servers", "version", ...}, "redis": {"up", "url", "version", ...}}``; a
        cluster adds one entry per node after ``"kafka"``: ``"kafka-1": {"up", "bootstrap_servers", "pid", ...}``."""
        statuses = self.status()
        kafka, redis = statuses["kafka"], statuses["redis"]
        nodes: dict[str, dict[str, object]] = {
            name: {
                "up": node.up,
                "bootstrap_servers": node.address,
                "version": node.version,
                "backend": node.backend,
                "pid": node.pid,
                "detail": node.detail,
            }
            for name, node in statuses.items()
            if name.startswith("kafka-")
        }
        return {
            "kafka": {
                "up": kafka.up,
                "bootstrap_servers": kafka.address,
                "version": kafka.version,
                "backend": kafka.backend,
                "pid": kafka.pid,
                "detail": kafka.detail,
            },
            **nodes,
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
        if self.kafka_cluster is not None:  # the Docker backend runs one node
            return "local"
        if self.config.redis_cluster or self.config.redis_tls or self.config.kafka_sasl:  # Docker: plain text only
            return "local"
        if self.kafka.running_pid() is not None or self.redis.running_pid() is not None:
            return "local"
        return "docker" if self._docker_available() else "local"
