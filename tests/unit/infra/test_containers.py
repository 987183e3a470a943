"""What the throwaway containers run (pure), and the Kafka entrypoint script run with a stand-in ``java``."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from slipstream.infra import containers, images
from slipstream.infra.config import PlatformConfig

CONFIG = PlatformConfig(kafka_port=41001, controller_port=41002, redis_port=41003, kafka_heap="256m")


def test_kafka_listens_on_loopback_only_with_the_local_brokers_settings() -> None:
    spec = containers.kafka_spec(CONFIG, "slipstream/kafka:4.3.1", ours=True, cluster_id="C", throwaway_id="t1",
                                 owner_pid=42)  # fmt: skip
    assert "listeners=PLAINTEXT://127.0.0.1:41001,CONTROLLER://127.0.0.1:41002" in spec.command
    assert "log.dirs=/tmp/kafka-data/log" in spec.command
    assert "num.io.threads=1" in spec.command
    assert spec.env["KAFKA_HOST"] == "127.0.0.1" and spec.env["KAFKA_HEAP"] == "256m"
    assert spec.env["KAFKA_CLUSTER_ID"] == "C"
    assert spec.entrypoint is None
    assert spec.labels == {containers.LABEL: "1", containers.ID_LABEL: "t1", containers.OWNER_LABEL: "42"}
    assert spec.name == "slipstream-throwaway-t1-kafka"


def test_an_image_that_is_not_ours_runs_the_injected_entrypoint() -> None:
    spec = containers.kafka_spec(CONFIG, "apache/kafka:4.3.1", ours=False, cluster_id="C", throwaway_id="t",
                                 owner_pid=1)  # fmt: skip
    assert spec.entrypoint == ["/bin/sh", containers.INJECTED_ENTRYPOINT]


def test_redis_binds_loopback_and_persists_nothing() -> None:
    spec = containers.redis_spec(CONFIG, "redis:7-alpine", throwaway_id="t", owner_pid=1)
    assert spec.command == ["redis-server", "--port", "41003", "--bind", "127.0.0.1", "--save", "", "--appendonly",
                            "no"]  # fmt: skip


def test_parse_owned() -> None:
    text = "0123456789ab 4242\nba9876543210 \n\n"
    assert containers.parse_owned(text) == [("0123456789ab", 4242), ("ba9876543210", None)]


def _run_entrypoint(tmp_path: Path, *args: str) -> list[str]:
    """Run kafka-entrypoint.sh with a ``java`` that records its arguments; the recorded calls."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir(exist_ok=True)
    java = bin_dir / "java"
    java.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    java.chmod(java.stat().st_mode | stat.S_IXUSR)
    script = tmp_path / "entrypoint.sh"
    script.write_bytes(images.entrypoint_bytes())
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "KAFKA_DATA": str(tmp_path / "data"), "KAFKA_PORT": "41001",
           "KAFKA_CONTROLLER_PORT": "41002", "KAFKA_HEAP": "256m"}  # fmt: skip
    subprocess.run(["/bin/sh", str(script), *args], env=env, check=True, timeout=30)
    return calls.read_text().splitlines()


def test_the_entrypoint_formats_once_then_runs_the_broker(tmp_path: Path) -> None:
    first = _run_entrypoint(tmp_path, "num.io.threads=1")
    assert len(first) == 2
    assert "kafka.tools.StorageTool format" in first[0] and "--standalone" in first[0]
    cluster_id = first[0].split("--cluster-id ")[1].split()[0]
    assert len(cluster_id) == 22 and not cluster_id.startswith("-")
    assert first[1].startswith("-Xms256m -Xmx256m") and first[1].endswith(
        f"kafka.Kafka {tmp_path}/data/server.properties"
    )
    props = (tmp_path / "data" / "server.properties").read_text().splitlines()
    assert "listeners=PLAINTEXT://127.0.0.1:41001,CONTROLLER://127.0.0.1:41002" in props
    assert props[-1] == "num.io.threads=1"  # arguments come last: they win
    (tmp_path / "data" / "log" / "meta.properties").write_text("formatted\n")
    (tmp_path / "calls").unlink()
    second = _run_entrypoint(tmp_path)
    assert len(second) == 1 and "kafka.Kafka" in second[0]
