"""Pure pieces of the local broker: its ``server.properties``, command lines and cluster id."""

from __future__ import annotations

import base64
import re
import uuid
from pathlib import Path, PurePath

from slipstream.infra.config import KafkaNodeAddress, PlatformConfig

NODE_ID = 1

_LOG_VERSION_RE = re.compile(r"Kafka version: (?P<version>\d+\.\d+\.\d+\S*)")
_CMDLINE_VERSION_RE = re.compile(r"kafka-(?P<version>\d+\.\d+\.\d+)[/\\]libs")


def server_properties(config: PlatformConfig, data_dir: PurePath) -> dict[str, str]:
    """Settings of a single-node KRaft cluster (broker and controller in one JVM) on ``config``'s ports.

    The controller quorum is *dynamic* (``controller.quorum.bootstrap.servers`` + ``format --standalone``),
    the Kafka 4 default; every internal topic has one partition and one replica so the node starts fast.
    """
    host = config.kafka_host
    broker = f"{host}:{config.kafka_port}"
    controller = f"{host}:{config.controller_port}"
    return {
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        "controller.quorum.bootstrap.servers": controller,
        "listeners": f"PLAINTEXT://{broker},CONTROLLER://{controller}",
        "advertised.listeners": f"PLAINTEXT://{broker},CONTROLLER://{controller}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "share.coordinator.state.topic.num.partitions": "1",
        "group.initial.rebalance.delay.ms": "0",
        # A laptop-sized broker: one network and one request thread. Every request crosses from one to the other;
        # with more threads the hand-offs cost more CPU in context switches than the threads add (2 vCPUs, 2
        # producers and 4 consumers at 1k msg/s: 76 % of a vCPU with 2 + 4 threads, 66 % with 1 + 1).
        "num.network.threads": "1",
        "num.io.threads": "1",
        "num.recovery.threads.per.data.dir": "1",
    }


def cluster_server_properties(config: PlatformConfig, node: KafkaNodeAddress, data_dir: PurePath) -> dict[str, str]:
    """Settings of node ``node`` of a ``config.brokers``-node KRaft cluster: every node is broker and controller.

    The quorum is *static* (``controller.quorum.voters``: every node, fixed by ``brokers``), so each node's storage is
    formatted with the cluster id alone. Replication is what a cluster is for: new topics and the internal ones get
    ``min(3, brokers)`` replicas and ``min.insync.replicas`` 2, so an ``acks=all`` write survives the loss of a node
    and the cluster keeps accepting writes with one node down.
    """
    host = config.kafka_host
    broker = f"{host}:{node.kafka_port}"
    controller = f"{host}:{node.controller_port}"
    replicas = str(min(3, config.brokers))
    voters = ",".join(f"{n.node_id}@{host}:{n.controller_port}" for n in config.kafka_nodes)
    props = server_properties(config, data_dir)
    del props["controller.quorum.bootstrap.servers"]
    props.update(
        {
            "node.id": str(node.node_id),
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://{broker},CONTROLLER://{controller}",
            "advertised.listeners": f"PLAINTEXT://{broker},CONTROLLER://{controller}",
            "default.replication.factor": replicas,
            "min.insync.replicas": "2",
            "offsets.topic.replication.factor": replicas,
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": "2",
            "share.coordinator.state.topic.replication.factor": replicas,
            "share.coordinator.state.topic.min.isr": "2",
            "unclean.leader.election.enable": "false",
        }
    )
    return props


def render_properties(props: dict[str, str]) -> str:
    """Java ``.properties`` text; values here never need escaping beyond backslashes."""
    lines = ["# Written by slipstream infra; edits are overwritten on the next `up`."]
    lines += [f"{key}={value.replace(chr(92), chr(92) * 2)}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, base64url without padding, as ``kafka-storage random-uuid``."""
    while True:
        raw = uuid.uuid4().bytes
        text = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka's Uuid.randomUuid() avoids these too (they look like flags)
            return text


def classpath(libs: Path) -> str:
    return f"{libs}/*"


def format_command(java: str, libs: Path, props_file: Path, cluster_id: str, *, standalone: bool = True) -> list[str]:
    """``kafka-storage format --standalone``: a single-node dynamic quorum (KIP-853, Kafka 3.9+).

    ``standalone=False`` formats a node of a static quorum (``controller.quorum.voters`` in its properties).
    """
    cmd = [
        java,
        "-cp",
        classpath(libs),
        "kafka.tools.StorageTool",
        "format",
        "--config",
        str(props_file),
        "--cluster-id",
        cluster_id,
    ]
    return [*cmd, "--standalone"] if standalone else cmd


def broker_command(
    java: str, libs: Path, props_file: Path, *, heap: str, log4j_config: Path, logs_dir: Path
) -> list[str]:
    """The broker JVM: ``kafka.Kafka server.properties`` with a fixed heap and G1, as ``kafka-server-start``."""
    return [
        java,
        f"-Xms{heap}",
        f"-Xmx{heap}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-XX:InitiatingHeapOccupancyPercent=35",
        "-XX:+ExplicitGCInvokesConcurrent",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j_config}",
        # Kafka logs its own shutdown from a JVM hook; log4j's hook must not close the file first.
        "-Dlog4j2.shutdownHookEnabled=false",
        f"-Dkafka.logs.dir={logs_dir}",
        "-cp",
        classpath(libs),
        "kafka.Kafka",
        str(props_file),
    ]


def version_from_log(text: str) -> str | None:
    """The version in the last ``Kafka version: X`` line of a broker log, if any."""
    matches = _LOG_VERSION_RE.findall(text)
    return matches[-1] if matches else None


def version_from_cmdline(cmdline: str) -> str | None:
    """The version of the jars on a running broker's classpath (``.../kafka-4.3.1/libs/*``)."""
    match = _CMDLINE_VERSION_RE.search(cmdline)
    return match["version"] if match else None
