"""ensure_engine with stand-in ``docker`` and ``dockerd`` programs: found, started and awaited, died, timed out."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from slipstream.infra import _proc
from slipstream.infra import docker_engine as de
from slipstream.infra.exceptions import DependencyMissingError, ServiceDiedError, ServiceTimeoutError


def _program(path: Path, script: str) -> str:
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.fixture
def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A ``docker`` that answers once ``<tmp>/ready`` exists; no system dockerd; root."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = _program(bin_dir / "docker", f"[ -f {tmp_path}/ready ] && {{ echo 20.10.24; exit 0; }}\nexit 1\n")
    monkeypatch.setattr(de, "find_docker", lambda: docker)
    monkeypatch.setattr(de, "SYSTEM_PIDFILE", tmp_path / "no-system-dockerd.pid")
    monkeypatch.setattr(de, "CONTAINERD_PIDFILE", tmp_path / "no-containerd.pid")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    yield tmp_path
    pid = _proc.read_pidfile(tmp_path / "home" / "dockerd.pid")
    if pid is not None and _proc.pid_alive(pid):
        _proc.terminate(pid, grace_s=2)


def _dockerd(fakes: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    dockerd = _program(fakes / "bin" / "dockerd", script)
    monkeypatch.setattr(de, "find_dockerd", lambda: dockerd)


def test_an_engine_that_answers_is_used_as_it_is(fakes: Path) -> None:
    (fakes / "ready").touch()
    engine = de.ensure_engine(install=False, home=fakes / "home")
    assert (engine.version, engine.started, engine.log) == ("20.10.24", False, None)


def test_dockerd_is_started_and_awaited_then_reused(fakes: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _dockerd(fakes, monkeypatch, f"echo starting\nsleep 0.3\ntouch {fakes}/ready\nwhile :; do sleep 1; done\n")
    messages: list[str] = []
    engine = de.ensure_engine(messages.append, install=False, home=fakes / "home")
    assert engine.started and engine.version == "20.10.24"
    assert engine.log == (fakes / "home" / "dockerd.log").resolve()
    assert "starting" in engine.log.read_text()
    assert de.running_dockerd((fakes / "home").resolve()) is not None
    assert any(m.startswith("starting the Docker engine") for m in messages)
    again = de.ensure_engine(install=False, home=fakes / "home")
    assert not again.started


def test_a_dockerd_that_exits_is_reported_with_its_log(fakes: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _dockerd(fakes, monkeypatch, "echo 'failed to start daemon: boom' >&2\nexit 1\n")
    with pytest.raises(ServiceDiedError, match="exited before `docker info` answered(.|\n)*boom"):
        de.ensure_engine(install=False, home=fakes / "home")


def test_a_dockerd_that_never_answers_times_out(fakes: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _dockerd(fakes, monkeypatch, "echo 'waiting forever'\nwhile :; do sleep 1; done\n")
    with pytest.raises(ServiceTimeoutError, match="did not answer `docker info` within 0.5 s(.|\n)*waiting forever"):
        de.ensure_engine(install=False, home=fakes / "home", timeout_s=0.5)


def test_no_dockerd_and_no_install(fakes: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(de, "find_dockerd", lambda: None)
    with pytest.raises(DependencyMissingError, match="`dockerd` is not installed"):
        de.ensure_engine(install=False, home=fakes / "home")


def test_not_root_cannot_start_dockerd(fakes: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _dockerd(fakes, monkeypatch, "exit 0\n")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(DependencyMissingError, match="needs root"):
        de.ensure_engine(install=False, home=fakes / "home")


def test_dockerd_runs_with_dockers_defaults() -> None:
    assert de.dockerd_command("/usr/sbin/dockerd") == ["/usr/sbin/dockerd"]


def test_a_system_pidfile_whose_pid_was_reused_is_removed_before_dockerd_starts(
    fakes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dockerd refuses to start while any process has the pid in /var/run/docker.pid (a CI run failed so)."""
    system_pidfile = fakes / "system-docker.pid"
    monkeypatch.setattr(de, "SYSTEM_PIDFILE", system_pidfile)
    system_pidfile.write_text(f"{os.getpid()}\n")  # alive, but this is pytest, not a dockerd
    script = (
        f"[ -f {system_pidfile} ] && {{ echo 'failed to start daemon: pid file found'; exit 1; }}\n"
        f"touch {fakes}/ready\nwhile :; do sleep 1; done\n"
    )
    _dockerd(fakes, monkeypatch, script)
    messages: list[str] = []
    engine = de.ensure_engine(messages.append, install=False, home=fakes / "home")
    assert engine.started and not system_pidfile.exists()
    assert any(m.startswith(f"removed {system_pidfile}") for m in messages)


def test_a_system_pidfile_of_a_live_dockerd_is_kept(fakes: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    system_pidfile = fakes / "system-docker.pid"
    monkeypatch.setattr(de, "SYSTEM_PIDFILE", system_pidfile)
    system_pidfile.write_text(f"{os.getpid()}\n")
    monkeypatch.setattr(_proc, "process_cmdline", lambda _pid: "/usr/sbin/dockerd -H fd://")
    assert not de.clear_stale_system_pidfile() and system_pidfile.exists()
    system_pidfile.write_text("999999999\n")  # no such process
    assert de.clear_stale_system_pidfile() and not system_pidfile.exists()
    assert not de.clear_stale_system_pidfile()
    containerd_pidfile = fakes / "containerd.pid"
    monkeypatch.setattr(de, "CONTAINERD_PIDFILE", containerd_pidfile)
    containerd_pidfile.write_text(f"{os.getpid()}\n")  # the dockerd stand-in above is no containerd either
    de.clear_stale_system_pidfile()
    assert not containerd_pidfile.exists()
