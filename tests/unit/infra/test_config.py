"""PlatformConfig: defaults, derived addresses, and validation that names the bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from slipstream.infra.config import PlatformConfig, parse_version
from slipstream.infra.exceptions import InfraConfigError, InfraError


def test_defaults_and_addresses() -> None:
    config = PlatformConfig()
    assert config.state_dir == Path(".slipstream")
    assert config.cache_dir == Path.home() / ".cache" / "slipstream"
    assert config.backend == "auto"
    assert config.kafka_version == "4.3.1"
    assert config.bootstrap_servers == "127.0.0.1:9092"
    assert config.redis_url == "redis://127.0.0.1:6379/0"
    assert config.kafka_cache_dir == Path.home() / ".cache" / "slipstream" / "kafka-4.3.1"
    assert config.kafka_state_dir == Path(".slipstream") / "kafka"


def test_custom_ports_flow_into_addresses() -> None:
    config = PlatformConfig(kafka_port=29092, controller_port=29093, redis_port=26379)
    assert config.bootstrap_servers == "127.0.0.1:29092"
    assert config.redis_url == "redis://127.0.0.1:26379/0"


def test_string_paths_become_paths() -> None:
    config = PlatformConfig(state_dir="rel/state", cache_dir="rel/cache")  # type: ignore[arg-type]
    assert config.state_dir == Path("rel/state")
    assert config.cache_dir == Path("rel/cache")


def test_is_frozen() -> None:
    config = PlatformConfig()
    with pytest.raises(AttributeError):
        config.kafka_port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"kafka_port": 0}, "kafka_port 0"),
        ({"kafka_port": 70000}, "kafka_port 70000"),
        ({"controller_port": -1}, "controller_port -1"),
        ({"redis_port": 65536}, "redis_port 65536"),
        ({"redis_port": True}, "redis_port True"),
        ({"kafka_port": 9093}, "both 9093"),
        ({"kafka_version": "4.3"}, "'4.3'"),
        ({"kafka_version": "latest"}, "'latest'"),
        ({"kafka_version": "3.9.1"}, "'3.9.1'"),
        ({"kafka_heap": "512"}, "'512'"),
        ({"kafka_heap": "1.5g"}, "'1.5g'"),
        ({"kafka_heap": "-Xmx1g"}, "'-Xmx1g'"),
        ({"backend": "podman"}, "'podman'"),
        ({"kafka_host": "bad host"}, "'bad host'"),
        ({"startup_timeout_s": 0}, "startup_timeout_s 0"),
    ],
)
def test_invalid_values_are_named(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(InfraConfigError) as caught:
        PlatformConfig(**kwargs)  # type: ignore[arg-type]
    assert fragment in str(caught.value)
    assert isinstance(caught.value, InfraError)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("heap", ["512m", "1g", "2G", "768M", "65536k"])
def test_valid_heaps(heap: str) -> None:
    assert PlatformConfig(kafka_heap=heap).kafka_heap == heap


def test_parse_version() -> None:
    assert parse_version("4.3.1") == (4, 3, 1)
    assert parse_version("10.0.12") == (10, 0, 12)
    with pytest.raises(InfraConfigError, match="'4.3.1-rc1'"):
        parse_version("4.3.1-rc1")
