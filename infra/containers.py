"""What the throwaway platform's containers run: images, command lines, environment, labels. Pure.

Both containers use the host's network and bind to 127.0.0.1 only, on ports chosen by the caller; nothing listens
on another interface and no traffic leaves loopback. Kafka gets the same ``server.properties`` as the local broker
(``kafka_props.server_properties``), passed to ``kafka-entrypoint.sh`` as ``key=value`` arguments; in an image that
is not ours (the official ``apache/kafka``) the entrypoint is copied in and run in place of the image's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath

from slipstream.infra import kafka_props
from slipstream.infra.config import REDIS_HOST, PlatformConfig

LABEL = "slipstream.throwaway"
OWNER_LABEL = "slipstream.throwaway.owner"
ID_LABEL = "slipstream.throwaway.id"
KAFKA_DATA = PurePosixPath("/tmp/kafka-data")  # noqa: S108 - inside the container, which is its only user
INJECTED_ENTRYPOINT = "/tmp/slipstream-kafka-entrypoint.sh"  # noqa: S108 - inside the container


@dataclass(frozen=True, slots=True)
class ContainerSpec:
    """One container to run with host networking: image, command (arguments), environment, entrypoint override."""

    name: str
    image: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    entrypoint: list[str] | None = None
    labels: dict[str, str] = field(default_factory=dict)


def labels(throwaway_id: str, owner_pid: int) -> dict[str, str]:
    """Marks a container as a throwaway's: which one, and which process owns it (for ``remove_leftovers``)."""
    return {LABEL: "1", ID_LABEL: throwaway_id, OWNER_LABEL: str(owner_pid)}


def kafka_spec(
    config: PlatformConfig, image: str, *, ours: bool, cluster_id: str, throwaway_id: str, owner_pid: int
) -> ContainerSpec:
    """The broker container; ``ours`` says the image has the entrypoint built in (else it is injected)."""
    props = kafka_props.server_properties(config, KAFKA_DATA / "log")
    env = {
        "KAFKA_HOST": config.kafka_host,
        "KAFKA_PORT": str(config.kafka_port),
        "KAFKA_CONTROLLER_PORT": str(config.controller_port),
        "KAFKA_HEAP": config.kafka_heap,
        "KAFKA_CLUSTER_ID": cluster_id,
        "KAFKA_DATA": str(KAFKA_DATA),
        "KAFKA_LIBS": "/opt/kafka/libs",
    }
    return ContainerSpec(
        name=f"slipstream-throwaway-{throwaway_id}-kafka",
        image=image,
        command=[f"{key}={value}" for key, value in props.items()],
        env=env,
        entrypoint=None if ours else ["/bin/sh", INJECTED_ENTRYPOINT],
        labels=labels(throwaway_id, owner_pid),
    )


def redis_spec(config: PlatformConfig, image: str, *, throwaway_id: str, owner_pid: int) -> ContainerSpec:
    """Redis on loopback, nothing persisted; the same arguments run in ``redis:7-alpine`` and in ours."""
    command = [
        "redis-server",
        "--port",
        str(config.redis_port),
        "--bind",
        REDIS_HOST,
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    return ContainerSpec(
        name=f"slipstream-throwaway-{throwaway_id}-redis",
        image=image,
        command=command,
        labels=labels(throwaway_id, owner_pid),
    )


def parse_owned(text: str) -> list[tuple[str, int | None]]:
    """``(container id, owner pid)`` pairs from ``docker ps --format '{{.ID}} {{.Label "<OWNER_LABEL>"}}'``."""
    owned: list[tuple[str, int | None]] = []
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        owner = fields[1] if len(fields) > 1 else ""
        owned.append((fields[0], int(owner) if owner.isdigit() else None))
    return owned
