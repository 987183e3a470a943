"""The package's surface: exports, no side effects at import, status shapes, the Redis command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from slipstream import infra
from slipstream.infra import _proc, redis_local
from slipstream.infra.base import ServiceLauncher, ServiceStatus
from slipstream.infra.config import PlatformConfig
from slipstream.infra.exceptions import DependencyMissingError
from slipstream.infra.kafka_local import LocalKafka
from slipstream.infra.platform import Platform
from slipstream.infra.redis_local import LocalRedis


def test_exports() -> None:
    assert sorted(infra.__all__) == ["Platform", "PlatformConfig", "ServiceLauncher", "ServiceStatus"]


def test_import_has_no_side_effects(tmp_path: Path) -> None:
    code = (
        "import sys, slipstream.infra, slipstream.infra.platform, slipstream.infra.kafka_local, "
        "slipstream.infra.redis_local, slipstream.infra.docker_platform;"
        "print(sorted(m for m in ('confluent_kafka', 'redis') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(Path(infra.__file__).parents[2]), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "[]"  # client libraries load only when a probe runs
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_launchers_satisfy_the_protocol(tmp_path: Path) -> None:
    config = PlatformConfig(state_dir=tmp_path)
    assert isinstance(LocalKafka(config), ServiceLauncher)
    assert isinstance(LocalRedis(config), ServiceLauncher)


def test_status_when_nothing_runs(tmp_path: Path) -> None:
    config = PlatformConfig(
        state_dir=tmp_path / "state", backend="local", kafka_port=1, controller_port=2, redis_port=3
    )
    report = Platform(config).status_json()
    assert set(report) == {"kafka", "redis"}
    assert report["kafka"]["up"] is False
    assert report["kafka"]["bootstrap_servers"] == "127.0.0.1:1"
    assert report["kafka"]["backend"] == "local"
    assert report["kafka"]["pid"] is None
    assert report["redis"] == {
        "up": False,
        "url": "redis://127.0.0.1:3/0",
        "version": None,
        "backend": "local",
        "pid": None,
        "detail": "not running",
    }


def test_service_status_to_dict() -> None:
    status = ServiceStatus("redis", True, "redis://127.0.0.1:6379/0", "7.0.15", "local", 42)
    assert status.to_dict() == {
        "name": "redis",
        "up": True,
        "address": "redis://127.0.0.1:6379/0",
        "version": "7.0.15",
        "backend": "local",
        "pid": 42,
        "detail": "",
    }


def test_redis_command() -> None:
    cmd = redis_local.redis_command("/usr/bin/redis-server", PlatformConfig(redis_port=16000), "/s/redis")
    assert cmd[0] == "/usr/bin/redis-server"
    pairs = dict(zip(cmd[1::2], cmd[2::2], strict=True))
    assert pairs == {
        "--port": "16000",
        "--bind": "127.0.0.1",
        "--save": "",
        "--appendonly": "no",
        "--dir": "/s/redis",
        "--logfile": "/s/redis/redis.log",
        "--pidfile": "/s/redis/redis.pid",
        "--daemonize": "no",
    }


def test_missing_redis_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_proc, "which", lambda *_args: None)
    with pytest.raises(DependencyMissingError) as caught:
        redis_local.find_redis_server()
    assert "apt-get install -y redis-server" in str(caught.value)
    assert "brew install redis" in str(caught.value)


def test_ensure_installed_without_root_or_apt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_proc, "which", lambda *_args: None)
    with pytest.raises(DependencyMissingError, match="apt-get install -y redis-server"):
        redis_local.ensure_installed()


def test_ensure_installed_retries_after_apt_update(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A fake apt-get whose first `install` fails (empty package lists) and which "installs" after `update`.
    log = tmp_path / "apt.log"
    installed = tmp_path / "redis-server"
    apt = tmp_path / "apt-get"
    apt.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {log}\n'
        f'if [ "$1" = update ]; then touch {tmp_path}/updated; exit 0; fi\n'
        f"if [ -e {tmp_path}/updated ]; then touch {installed}; exit 0; fi\n"
        "echo 'E: Unable to locate package redis-server' >&2; exit 100\n"
    )
    apt.chmod(0o755)

    def which(name: str, *_dirs: str) -> str | None:
        if name == "apt-get":
            return str(apt)
        if name == "redis-server" and installed.exists():
            return str(installed)
        return None

    monkeypatch.setattr(_proc, "which", which)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    messages: list[str] = []
    assert redis_local.ensure_installed(messages.append) == str(installed)
    calls = log.read_text().splitlines()
    assert calls == [
        "install -y --no-install-recommends redis-server",
        "update",
        "install -y --no-install-recommends redis-server",
    ]
    assert messages[0] == "installing redis-server with apt-get ..."
