"""The broker's server.properties, command lines, cluster ids and version parsing."""

from __future__ import annotations

import base64
from pathlib import Path

from slipstream.infra import kafka_props
from slipstream.infra.config import PlatformConfig


def _props(**kwargs: object) -> dict[str, str]:
    return kafka_props.server_properties(PlatformConfig(**kwargs), Path("/state/kafka/data"))  # type: ignore[arg-type]


def test_single_node_kraft_settings() -> None:
    props = _props()
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:9093"
    assert "controller.quorum.voters" not in props  # incompatible with `format --standalone`
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["advertised.listeners"].startswith("PLAINTEXT://127.0.0.1:9092")
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["listener.security.protocol.map"] == "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    assert props["log.dirs"] == "/state/kafka/data"


def test_internal_topics_fit_one_broker() -> None:
    props = _props()
    for key in (
        "offsets.topic.replication.factor",
        "offsets.topic.num.partitions",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "transaction.state.log.num.partitions",
        "share.coordinator.state.topic.replication.factor",
        "num.partitions",
    ):
        assert props[key] == "1", key
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "false"


def test_ports_follow_config() -> None:
    props = _props(kafka_port=29092, controller_port=29093)
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:29093"


def test_render_properties() -> None:
    text = kafka_props.render_properties({"a.b": "1", "log.dirs": "C:\\data"})
    lines = text.splitlines()
    assert lines[0].startswith("#")
    assert lines[1:] == ["a.b=1", "log.dirs=C:\\\\data"]
    assert text.endswith("\n")


def test_cluster_id_is_kafka_shaped() -> None:
    ids = {kafka_props.new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    for cluster_id in ids:
        assert len(cluster_id) == 22
        assert not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_format_command_uses_standalone_quorum() -> None:
    cmd = kafka_props.format_command("/usr/bin/java", Path("/c/libs"), Path("/s/server.properties"), "abc")
    assert cmd[:4] == ["/usr/bin/java", "-cp", "/c/libs/*", "kafka.tools.StorageTool"]
    assert cmd[4:] == ["format", "--config", "/s/server.properties", "--cluster-id", "abc", "--standalone"]


def test_broker_command() -> None:
    cmd = kafka_props.broker_command(
        "java",
        Path("/c/kafka-4.3.1/libs"),
        Path("/s/server.properties"),
        heap="768m",
        log4j_config=Path("/s/log4j2.properties"),
        logs_dir=Path("/s/logs"),
    )
    assert cmd[0] == "java"
    assert {"-Xms768m", "-Xmx768m", "-XX:+UseG1GC"} <= set(cmd)
    assert "-Dlog4j2.configurationFile=/s/log4j2.properties" in cmd
    assert "-Dkafka.logs.dir=/s/logs" in cmd
    assert cmd[-4:] == ["-cp", "/c/kafka-4.3.1/libs/*", "kafka.Kafka", "/s/server.properties"]
    assert kafka_props.version_from_cmdline(" ".join(cmd)) == "4.3.1"


def test_version_from_log_takes_the_last_start() -> None:
    log = (
        "[2026-01-01 10:00:00,000] INFO Kafka version: 4.2.0 (org.apache.kafka.common.utils.AppInfoParser)\n"
        "[2026-01-01 11:00:00,000] INFO Kafka version: 4.3.1 (org.apache.kafka.common.utils.AppInfoParser)\n"
        "[2026-01-01 11:00:00,001] INFO [KafkaRaftServer nodeId=1] Kafka Server started\n"
    )
    assert kafka_props.version_from_log(log) == "4.3.1"
    assert kafka_props.version_from_log("nothing here") is None


def test_version_from_cmdline_without_our_layout() -> None:
    assert kafka_props.version_from_cmdline("java -cp /opt/kafka/libs/* kafka.Kafka x") is None
