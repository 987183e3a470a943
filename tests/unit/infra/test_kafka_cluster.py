"""The 3-node cluster's pure parts: brokers validation, port derivation, each node's properties, node discovery."""

from __future__ import annotations

from pathlib import Path

import pytest

from slipstream.infra import kafka_props
from slipstream.infra.config import KafkaNodeAddress, PlatformConfig
from slipstream.infra.exceptions import InfraConfigError, InfraError
from slipstream.infra.kafka_cluster import LocalKafkaCluster, node_dirs, running_nodes
from slipstream.infra.platform import Platform


def test_one_broker_is_the_default_and_keeps_its_address() -> None:
    config = PlatformConfig()
    assert config.brokers == 1
    assert config.kafka_nodes == (KafkaNodeAddress(1, 9092, 9093),)
    assert config.bootstrap_servers == "127.0.0.1:9092"


def test_three_nodes_take_ports_two_apart() -> None:
    config = PlatformConfig(brokers=3, kafka_port=29000, controller_port=29001)
    assert config.kafka_nodes == (
        KafkaNodeAddress(1, 29000, 29001),
        KafkaNodeAddress(2, 29002, 29003),
        KafkaNodeAddress(3, 29004, 29005),
    )
    assert config.bootstrap_servers == "127.0.0.1:29000,127.0.0.1:29002,127.0.0.1:29004"


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"brokers": 2}, "brokers 2 is not 1 or 3..9"),
        ({"brokers": 0}, "brokers 0 is not"),
        ({"brokers": 10}, "brokers 10 is not"),
        ({"brokers": True}, "brokers True is not"),
        ({"brokers": "3"}, "brokers '3' is not"),
        ({"brokers": 3, "backend": "docker"}, "brokers 3 needs the local backend"),
        ({"brokers": 3, "kafka_port": 9092, "controller_port": 9094}, "port 9094 is both node 1's controller_port"),
        ({"brokers": 3, "kafka_port": 9096, "controller_port": 9092}, "port 9096 is both node 1's kafka_port"),
        ({"brokers": 3, "kafka_port": 65532, "controller_port": 65000}, "node 3's kafka_port (kafka_port+4) would be"),
    ],
)
def test_bad_broker_settings_name_the_value(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(InfraConfigError, match=r"^[^\n]+$") as caught:
        PlatformConfig(**kwargs)  # type: ignore[arg-type]
    assert fragment in str(caught.value)


def _node_props(node_id: int, **kwargs: object) -> dict[str, str]:
    config = PlatformConfig(brokers=3, kafka_port=29000, controller_port=29001, **kwargs)  # type: ignore[arg-type]
    node = config.kafka_nodes[node_id - 1]
    return kafka_props.cluster_server_properties(config, node, Path(f"/state/kafka/node-{node_id}/data"))


def test_each_node_has_its_id_listeners_and_log_dir() -> None:
    for node_id, port in ((1, 29000), (2, 29002), (3, 29004)):
        props = _node_props(node_id)
        assert props["node.id"] == str(node_id)
        assert props["process.roles"] == "broker,controller"
        assert props["listeners"] == f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{port + 1}"
        assert props["advertised.listeners"] == props["listeners"]
        assert props["log.dirs"] == f"/state/kafka/node-{node_id}/data"


def test_every_node_votes_in_one_static_quorum() -> None:
    voters = {_node_props(n)["controller.quorum.voters"] for n in (1, 2, 3)}
    assert voters == {"1@127.0.0.1:29001,2@127.0.0.1:29003,3@127.0.0.1:29005"}
    assert "controller.quorum.bootstrap.servers" not in _node_props(1)  # a static quorum names its voters instead


def test_replication_survives_one_node() -> None:
    props = _node_props(2)
    for key in (
        "default.replication.factor",
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "share.coordinator.state.topic.replication.factor",
    ):
        assert props[key] == "3", key
    for key in ("min.insync.replicas", "transaction.state.log.min.isr", "share.coordinator.state.topic.min.isr"):
        assert props[key] == "2", key
    assert props["unclean.leader.election.enable"] == "false"


def test_single_node_properties_are_unchanged() -> None:
    props = kafka_props.server_properties(PlatformConfig(), Path("/d"))
    assert props["min.insync.replicas"] == "1"
    assert props["default.replication.factor"] == "1"
    assert "controller.quorum.voters" not in props


def test_cluster_nodes_are_formatted_without_standalone() -> None:
    cmd = kafka_props.format_command("java", Path("/libs"), Path("/n/server.properties"), "abc", standalone=False)
    assert cmd[-2:] == ["--cluster-id", "abc"]
    assert "--standalone" not in cmd


def test_node_dirs_are_found_whatever_the_broker_count(tmp_path: Path) -> None:
    for name in ("node-1", "node-2", "node-10", "node-x", "data"):
        (tmp_path / name).mkdir()
    (tmp_path / "node-3").write_text("a file, not a node")
    assert list(node_dirs(tmp_path)) == [1, 2, 10]
    assert running_nodes(tmp_path) == {}
    assert node_dirs(tmp_path / "missing") == {}


def test_cluster_layout(tmp_path: Path) -> None:
    cluster = LocalKafkaCluster(PlatformConfig(state_dir=tmp_path, brokers=3))
    assert sorted(cluster.nodes) == [1, 2, 3]
    assert cluster.nodes[2].home == tmp_path.resolve() / "kafka" / "node-2"
    assert cluster.nodes[2].props_file.name == "server.properties"
    assert list(tmp_path.iterdir()) == []  # building it touches nothing


def test_one_node_is_not_a_cluster(tmp_path: Path) -> None:
    with pytest.raises(InfraError, match="single node"):
        LocalKafkaCluster(PlatformConfig(state_dir=tmp_path))


def test_platform_drill_api_needs_a_cluster(tmp_path: Path) -> None:
    platform = Platform(PlatformConfig(state_dir=tmp_path, backend="local"))
    assert platform.kafka_cluster is None
    with pytest.raises(InfraError, match=r"stop_broker needs a local Kafka cluster .* brokers 1"):
        platform.stop_broker(1)


def test_platform_refuses_an_unknown_node(tmp_path: Path) -> None:
    platform = Platform(PlatformConfig(state_dir=tmp_path, brokers=3))
    assert platform.backend_name == "local"  # auto never picks Docker for a cluster
    with pytest.raises(InfraError, match="node_id 4 is not a node of this cluster"):
        platform.stop_broker(4)
