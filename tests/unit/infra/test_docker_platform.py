"""The Docker backend without an engine: detection, Compose commands and the Compose file's variables."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]  # test-only; no types-PyYAML in the venv

from slipstream.infra import docker_platform as dp
from slipstream.infra.config import PlatformConfig
from slipstream.infra.platform import Platform


def _fake_docker(tmp_path: Path, script: str) -> str:
    docker = tmp_path / "docker"
    docker.write_text("#!/bin/sh\n" + script)
    docker.chmod(docker.stat().st_mode | stat.S_IXUSR)
    return str(docker)


def test_engine_detected_only_when_docker_info_succeeds(tmp_path: Path) -> None:
    assert dp.docker_engine_available(_fake_docker(tmp_path, "echo 27.3.1\n"))


def test_cli_without_engine_is_not_an_engine(tmp_path: Path) -> None:
    script = "echo 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock.' >&2\nexit 1\n"
    assert not dp.docker_engine_available(_fake_docker(tmp_path, script))


def test_hanging_engine_is_not_an_engine(tmp_path: Path) -> None:
    assert not dp.docker_engine_available(_fake_docker(tmp_path, "sleep 5\n"), timeout_s=0.3)


def test_no_docker_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dp, "find_docker", lambda: None)
    assert not dp.docker_engine_available()
    assert not dp.compose_available()


def test_compose_commands() -> None:
    file = str(dp.COMPOSE_FILE)
    assert dp.up_command("docker") == ["docker", "compose", "-f", file, "-p", "slipstream", "up", "-d"]
    assert dp.down_command("docker", wipe=False) == ["docker", "compose", "-f", file, "-p", "slipstream", "down"]
    assert dp.down_command("docker", wipe=True)[-2:] == ["down", "--volumes"]


def test_compose_env_follows_config() -> None:
    config = PlatformConfig(kafka_version="4.2.0", kafka_port=29092, redis_port=26379, kafka_heap="1g")
    assert dp.compose_env(config) == {
        "KAFKA_VERSION": "4.2.0",
        "KAFKA_HOST": "127.0.0.1",
        "KAFKA_PORT": "29092",
        "KAFKA_HEAP": "1g",
        "REDIS_PORT": "26379",
    }


def test_compose_file_uses_exactly_our_variables() -> None:
    text = dp.COMPOSE_FILE.read_text()
    used = set(re.findall(r"\$\{([A-Z_]+)", text))
    assert used == set(dp.compose_env(PlatformConfig()))
    spec = yaml.safe_load(text)
    kafka, redis = spec["services"]["kafka"], spec["services"]["redis"]
    assert kafka["image"] == "apache/kafka:${KAFKA_VERSION:-4.3.1}"
    assert kafka["ports"] == ["${KAFKA_HOST:-127.0.0.1}:${KAFKA_PORT:-9092}:9092"]
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "HOST://${KAFKA_HOST:-127.0.0.1}:${KAFKA_PORT:-9092}" in kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert redis["image"] == "redis:7-alpine"
    assert redis["ports"] == ["127.0.0.1:${REDIS_PORT:-6379}:6379"]


@pytest.mark.parametrize(
    ("backend", "engine", "expected"),
    [
        ("local", True, "local"),
        ("docker", False, "docker"),
        ("auto", True, "docker"),
        ("auto", False, "local"),
    ],
)
def test_backend_resolution(tmp_path: Path, backend: str, engine: bool, expected: str) -> None:
    config = PlatformConfig(state_dir=tmp_path, backend=backend)  # type: ignore[arg-type]
    asked: list[bool] = []

    def probe() -> bool:
        asked.append(True)
        return engine

    platform = Platform(config, docker_available=probe)
    assert platform.backend_name == expected
    assert platform.backend_name == expected
    assert len(asked) <= 1  # resolved once
    if backend != "auto":
        assert asked == []
