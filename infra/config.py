"""Settings of the local platform: where its state lives, which Kafka, which ports.

One frozen object, validated once when it is built; nothing here reads the environment or the disk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from slipstream.infra.exceptions import InfraConfigError

Backend = Literal["auto", "local", "docker"]

BACKENDS: tuple[Backend, ...] = ("auto", "local", "docker")

DEFAULT_KAFKA_VERSION = "4.3.1"

# Redis is only ever bound to the loopback interface (by default without authentication; with redis_tls, TLS and an
# ACL login: infra/redis_tls.py).
REDIS_HOST = "127.0.0.1"
REDIS_CLUSTER_SIZE = 3  # masters of the local Redis Cluster (no replicas)

_VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
_HEAP_RE = re.compile(r"^[1-9]\d*[kKmMgG]$")
_IMAGE_RE = re.compile(r"^[a-z0-9][A-Za-z0-9._/:@-]*$")

# A KRaft quorum of N controllers survives the loss of (N - 1) // 2: two nodes survive nothing, so 2 is refused.
MAX_BROKERS = 9
# Node n (1-based) of a cluster listens on kafka_port + PORT_STRIDE * (n - 1) and controller_port + the same.
PORT_STRIDE = 2


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "slipstream"


def parse_version(version: str) -> tuple[int, int, int]:
    """``"4.3.1"`` -> ``(4, 3, 1)``; raise :class:`InfraConfigError` for anything else."""
    match = _VERSION_RE.match(version)
    if match is None:
        msg = f"kafka_version {version!r} is not of the form X.Y.Z (e.g. '4.3.1')"
        raise InfraConfigError(msg)
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def _check_port(name: str, port: int) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        msg = f"{name} {port!r} is not a TCP port (1..65535)"
        raise InfraConfigError(msg)


@dataclass(frozen=True, slots=True)
class KafkaNodeAddress:
    """One KRaft node (broker and controller in one JVM) of the local platform: its id and its two ports."""

    node_id: int
    kafka_port: int
    controller_port: int


@dataclass(frozen=True, slots=True)
class PlatformConfig:
    """Where and how the local Kafka broker and Redis run.

    ``state_dir`` holds pid files, logs and Kafka's data (``infra down --wipe`` deletes it);
    ``cache_dir`` holds the Kafka jars resolved from Maven Central, shared by every checkout.
    ``kafka_image`` (None: ``apache/kafka:<kafka_version>``, see :attr:`kafka_image_ref`) and ``redis_image`` are
    the container images of a throwaway platform; when one is neither in the engine nor pullable, a local image is
    built instead (:mod:`slipstream.infra.images`). A Kafka image must hold the jars in ``/opt/kafka/libs`` and a
    ``java`` on PATH, as the official one does.

    ``brokers`` is 1 (one combined broker+controller node, the default) or 3..9: a local KRaft cluster of that many
    combined nodes (ids 1..N, all of them controllers), node n on ``kafka_port + 2*(n-1)`` and
    ``controller_port + 2*(n-1)`` (see :attr:`kafka_nodes`); local backend only.

    ``redis_cluster``: Redis is a local Redis Cluster of three masters on ``redis_cluster_port`` + 0..2 (their cluster
    buses + 10000) instead of one server on ``redis_port``, and :attr:`redis_url` names it ``redis+cluster://...``
    (:mod:`slipstream.infra.redis_cluster_local`); local backend only.

    ``redis_tls``: the local Redis speaks TLS only, on ``redis_port``, with an ACL login
    (:mod:`slipstream.infra.redis_tls`; the URL with the password: ``redis_tls.local_tls_url``); local backend, one
    server.

    ``kafka_sasl``: the local broker listens with SASL_SSL (SCRAM-SHA-512) on ``kafka_port``
    (:mod:`slipstream.infra.kafka_sasl`; the clients' settings with the password: ``kafka_sasl.client_security``);
    local backend, one broker.
    """

    state_dir: Path = Path(".slipstream")
    cache_dir: Path = field(default_factory=_default_cache_dir)
    backend: Backend = "auto"
    kafka_version: str = DEFAULT_KAFKA_VERSION
    kafka_host: str = "127.0.0.1"
    kafka_port: int = 9092
    controller_port: int = 9093
    kafka_heap: str = "512m"
    redis_port: int = 6379
    redis_cluster: bool = False
    redis_cluster_port: int = 7100
    redis_tls: bool = False
    kafka_sasl: bool = False
    startup_timeout_s: float = 90
    kafka_image: str | None = None
    redis_image: str = "redis:7-alpine"
    brokers: int = 1

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            msg = f"backend {self.backend!r} is not one of {', '.join(BACKENDS)}"
            raise InfraConfigError(msg)
        major, _minor, _patch = parse_version(self.kafka_version)
        if major < 4:
            msg = f"kafka_version {self.kafka_version!r} is older than 4.0; the platform runs KRaft-only Kafka 4.x"
            raise InfraConfigError(msg)
        for name in ("kafka_port", "controller_port", "redis_port"):
            _check_port(name, getattr(self, name))
        self._check_redis_cluster()
        if self.kafka_port == self.controller_port:
            msg = f"kafka_port and controller_port are both {self.kafka_port}; they must differ"
            raise InfraConfigError(msg)
        if not _HEAP_RE.match(self.kafka_heap):
            msg = f"kafka_heap {self.kafka_heap!r} is not a JVM size such as '512m' or '1g'"
            raise InfraConfigError(msg)
        if not self.kafka_host or any(ch.isspace() for ch in self.kafka_host):
            msg = f"kafka_host {self.kafka_host!r} is not a host name or address"
            raise InfraConfigError(msg)
        for name in ("kafka_image", "redis_image"):
            image = getattr(self, name)
            if image is not None and not _IMAGE_RE.match(str(image)):
                msg = f"{name} {image!r} is not an image reference such as 'apache/kafka:4.3.1'"
                raise InfraConfigError(msg)
        self._check_brokers()
        if not self.startup_timeout_s > 0:
            msg = f"startup_timeout_s {self.startup_timeout_s!r} must be a positive number of seconds"
            raise InfraConfigError(msg)
        # Accept str paths from callers (CLI options, tests) but always hold Path objects.
        object.__setattr__(self, "state_dir", Path(self.state_dir))
        object.__setattr__(self, "cache_dir", Path(self.cache_dir))

    def _check_brokers(self) -> None:
        brokers = self.brokers
        valid = (
            isinstance(brokers, int) and not isinstance(brokers, bool) and (brokers == 1 or 3 <= brokers <= MAX_BROKERS)
        )
        if not valid:
            msg = f"brokers {brokers!r} is not 1 or 3..{MAX_BROKERS} (a KRaft quorum of 2 cannot lose a node)"
            raise InfraConfigError(msg)
        if self.kafka_sasl and (brokers != 1 or self.backend == "docker"):
            msg = "kafka_sasl needs the local backend and one broker (not brokers > 1, not backend 'docker')"
            raise InfraConfigError(msg)
        if brokers == 1:
            return
        if self.backend == "docker":
            msg = f"brokers {brokers} needs the local backend; the Docker backend runs one node (backend 'docker')"
            raise InfraConfigError(msg)
        owners: dict[int, str] = {}
        for node in self.kafka_nodes:
            for kind, port in (("kafka_port", node.kafka_port), ("controller_port", node.controller_port)):
                offset = PORT_STRIDE * (node.node_id - 1)
                name = f"node {node.node_id}'s {kind}" + (f" ({kind}+{offset})" if offset else "")
                if port > 65535:
                    msg = f"{name} would be {port}, above 65535; choose a lower {kind}"
                    raise InfraConfigError(msg)
                if port in owners:
                    msg = (
                        f"port {port} is both {owners[port]} and {name}: with {brokers} brokers choose kafka_port and "
                        f"controller_port whose nodes' ports do not overlap (e.g. 9092 and 9093)"
                    )
                    raise InfraConfigError(msg)
                owners[port] = name

    @property
    def kafka_nodes(self) -> tuple[KafkaNodeAddress, ...]:
        """The Kafka nodes: ids 1..``brokers``, node n on ``kafka_port + 2*(n-1)`` / ``controller_port + 2*(n-1)``."""
        return tuple(
            KafkaNodeAddress(n, self.kafka_port + PORT_STRIDE * (n - 1), self.controller_port + PORT_STRIDE * (n - 1))
            for n in range(1, self.brokers + 1)
        )

    @property
    def bootstrap_servers(self) -> str:
        """``host:port[,host:port...]`` for Kafka clients, every node: ``"127.0.0.1:9092"`` for one broker,
        ``"127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"`` for three."""
        if self.brokers == 1:
            return f"{self.kafka_host}:{self.kafka_port}"
        return ",".join(f"{self.kafka_host}:{node.kafka_port}" for node in self.kafka_nodes)

    def _check_redis_cluster(self) -> None:
        """``redis_cluster``: three local masters on ``redis_cluster_port`` + 0..2, their buses + 10000."""
        _check_port("redis_cluster_port", self.redis_cluster_port)
        if self.redis_cluster_port + REDIS_CLUSTER_SIZE - 1 + 10000 > 65535:
            msg = f"redis_cluster_port {self.redis_cluster_port} leaves no room for 3 masters and their bus ports"
            raise InfraConfigError(msg)
        if self.redis_cluster and self.backend == "docker":
            msg = "redis_cluster needs the local backend; the Docker backend runs one Redis (backend 'docker')"
            raise InfraConfigError(msg)
        if self.redis_tls and (self.redis_cluster or self.backend == "docker"):
            msg = "redis_tls needs the local backend and one Redis (not redis_cluster, not backend 'docker')"
            raise InfraConfigError(msg)

    @property
    def redis_cluster_ports(self) -> tuple[int, ...]:
        """The local Redis Cluster's masters: ``redis_cluster_port`` + 0, 1, 2."""
        return tuple(self.redis_cluster_port + i for i in range(REDIS_CLUSTER_SIZE))

    @property
    def redis_url(self) -> str:
        """URL of Redis database 0, e.g. ``"redis://127.0.0.1:6379/0"``; with ``redis_cluster`` the cluster's masters,
        ``"redis+cluster://127.0.0.1:7100,127.0.0.1:7101,127.0.0.1:7102"``."""
        if self.redis_cluster:
            return "redis+cluster://" + ",".join(f"{REDIS_HOST}:{port}" for port in self.redis_cluster_ports)
        if self.redis_tls:  # without the password, which only the state dir holds
            return f"rediss://{REDIS_HOST}:{self.redis_port}/0"
        return f"redis://{REDIS_HOST}:{self.redis_port}/0"

    @property
    def kafka_image_ref(self) -> str:
        """The Kafka image to run: ``kafka_image``, else ``apache/kafka:<kafka_version>``."""
        return self.kafka_image or f"apache/kafka:{self.kafka_version}"

    @property
    def kafka_state_dir(self) -> Path:
        return self.state_dir / "kafka"

    @property
    def redis_cluster_state_dir(self) -> Path:
        return self.state_dir / "redis-cluster"

    @property
    def redis_state_dir(self) -> Path:
        return self.state_dir / "redis"

    @property
    def kafka_cache_dir(self) -> Path:
        """Jars of this Kafka version: ``<cache_dir>/kafka-<version>``."""
        return self.cache_dir / f"kafka-{self.kafka_version}"
