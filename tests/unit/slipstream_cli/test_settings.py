from __future__ import annotations

import pytest

from slipstream.exceptions import ConfigError
from slipstream.settings import load_settings


def test_defaults_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "SLIPSTREAM_KAFKA_VERSION"):
        monkeypatch.delenv(var, raising=False)
    settings = load_settings()
    assert settings.kafka_version.startswith("4.")
    assert settings.kafka_bootstrap_servers is None


def test_external_services_come_from_the_standard_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1234")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:5/0")
    settings = load_settings()
    assert settings.kafka_bootstrap_servers == "127.0.0.1:1234"
    assert settings.redis_url is not None and settings.redis_url.get_secret_value() == "redis://127.0.0.1:5/0"


def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLIPSTREAM_KAFKA_HEAP", "lots")
    with pytest.raises(ConfigError, match=r"SLIPSTREAM_KAFKA_HEAP='lots'.*512m"):
        load_settings()


def test_old_kafka_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLIPSTREAM_KAFKA_VERSION", "3.9.0")
    with pytest.raises(ConfigError, match=r"SLIPSTREAM_KAFKA_VERSION='3.9.0'.*>= 4.0.1"):
        load_settings()


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(Exception, match="frozen"):
        settings.topic_prefix = "x"  # type: ignore[misc]


def test_kafka_brokers_reach_the_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    from slipstream.app import Slipstream

    monkeypatch.setenv("SLIPSTREAM_KAFKA_BROKERS", "3")
    config = Slipstream(load_settings()).platform_config
    assert config.brokers == 3
    assert config.bootstrap_servers == "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"


def test_two_kafka_brokers_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLIPSTREAM_KAFKA_BROKERS", "2")
    with pytest.raises(ConfigError, match=r"^[^\n]*SLIPSTREAM_KAFKA_BROKERS='2'.*1 or 3\.\.9"):
        load_settings()
