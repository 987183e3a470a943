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


def test_a_colocated_engine_yields_to_the_scorer_but_a_paced_one_is_never_starved(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The idle scheduling class gets no CPU while anything else is runnable: a caller that waits for the engine's
    progress (the drill) would wait for ever on a busy machine, so a paced engine is only niced."""
    for var in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "SLIPSTREAM_ENGINE_NICE", "SLIPSTREAM_ENGINE_IDLE_CLASS"):
        monkeypatch.delenv(var, raising=False)
    from slipstream.app import Slipstream
    from slipstream.streams.engine.runner import COLOCATED_NICE

    app = Slipstream(load_settings())
    alone, colocated = app.engine_settings(), app.engine_settings(colocated=True)
    paced = app.engine_settings(colocated=True, paced=True)
    assert (alone.nice, alone.idle_class) == (0, False)
    assert (colocated.nice, colocated.idle_class) == (COLOCATED_NICE, True)
    assert (paced.nice, paced.idle_class) == (COLOCATED_NICE, False)
