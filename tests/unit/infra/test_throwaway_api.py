"""The throwaway platform's API without services: choices, validation, and what close() does."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from slipstream.infra import throwaway
from slipstream.infra.config import PlatformConfig
from slipstream.infra.exceptions import DependencyMissingError, InfraConfigError, InfraError
from slipstream.infra.ports import free_ports
from slipstream.infra.throwaway import Throwaway, start_throwaway


def test_unknown_backend_and_bad_version_fail_before_anything_starts() -> None:
    with pytest.raises(InfraConfigError, match="'docker' is not one of auto, testcontainers, local"):
        start_throwaway("docker")  # type: ignore[arg-type]
    with pytest.raises(InfraConfigError, match="'4.3' is not of the form"):
        start_throwaway("local", kafka_version="4.3")


def test_testcontainers_without_an_engine_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(throwaway, "find_docker", lambda: None)
    with pytest.raises(DependencyMissingError, match="needs a Docker engine"):
        start_throwaway("testcontainers")


def test_auto_without_an_engine_uses_the_local_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(throwaway, "find_docker", lambda: None)
    chosen: list[str] = []

    def local(version: str, _say: object, _begin: float) -> Throwaway:
        chosen.append(version)
        return Throwaway("127.0.0.1:1", "redis://127.0.0.1:2/0", "local", 0.0)

    monkeypatch.setattr(throwaway, "_start_local", local)
    assert start_throwaway("auto", kafka_version="4.2.0").backend == "local"
    assert chosen == ["4.2.0"]


def test_close_runs_every_step_once_last_first_and_reports_failures() -> None:
    ran: list[str] = []

    def failing() -> None:
        ran.append("failing")
        msg = "engine gone"
        raise InfraError(msg)

    platform = Throwaway("127.0.0.1:1", "redis://127.0.0.1:2/0", "local", 1.0, [lambda: ran.append("a"), failing])
    with pytest.raises(InfraError, match="127.0.0.1:1: engine gone"):
        platform.close()
    assert ran == ["failing", "a"]
    platform.close()
    with platform:
        pass
    assert ran == ["failing", "a"]


def test_measure_start_returns_start_s(monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[bool] = []
    fake = Throwaway("127.0.0.1:1", "redis://127.0.0.1:2/0", "local", 2.5, [lambda: closed.append(True)])
    monkeypatch.setattr(throwaway, "start_throwaway", lambda *_a, **_k: fake)
    assert throwaway.measure_start("local") == 2.5
    assert closed == [True]


def test_free_ports_are_distinct() -> None:
    ports = free_ports(3)
    assert len(set(ports)) == 3 and all(1024 <= port <= 65535 for port in ports)


def test_images_are_settings() -> None:
    assert PlatformConfig().kafka_image_ref == "apache/kafka:4.3.1"
    assert PlatformConfig(kafka_version="4.2.0").kafka_image_ref == "apache/kafka:4.2.0"
    assert PlatformConfig(kafka_image="slipstream/kafka:4.3.1").kafka_image_ref == "slipstream/kafka:4.3.1"
    assert PlatformConfig().redis_image == "redis:7-alpine"
    with pytest.raises(InfraConfigError, match="redis_image 'redis 7' is not an image reference"):
        PlatformConfig(redis_image="redis 7")


def test_leftovers_of_a_live_owner_are_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(throwaway, "find_docker", lambda: None)
    monkeypatch.setattr(throwaway.tempfile, "gettempdir", lambda: str(tmp_path))
    mine = tmp_path / f"{throwaway.STATE_PREFIX}mine"
    mine.mkdir()
    (mine / throwaway.OWNER_FILE).write_text(f"{os.getpid()}\n")
    assert throwaway.remove_leftovers() == []
    assert mine.exists()
