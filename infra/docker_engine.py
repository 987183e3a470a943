"""Find a Docker engine, and start one when this process may.

:func:`ensure_engine` returns as soon as ``docker info`` answers. Otherwise, as root, it installs Debian's
``docker.io`` (with ``debootstrap``, which :mod:`slipstream.infra.images` builds its base image with) when
``dockerd`` is missing and ``install`` allows it, then starts ``dockerd`` as a background daemon and waits until
``docker info`` answers: a real request to the engine, not a socket that exists. The daemon's output goes to
``<home>/dockerd.log`` and its pid to ``<home>/dockerd.pid`` (``home`` defaults to ``~/.cache/slipstream/dockerd``).
It is left running: other checkouts and processes use the same engine. Safe to call again and from two processes at
once (a file lock; a dockerd that is already starting is waited for, never started twice).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from slipstream.infra import _proc, apt
from slipstream.infra.config import PlatformConfig
from slipstream.infra.docker_platform import find_docker
from slipstream.infra.exceptions import DependencyMissingError, InfraError, ServiceDiedError, ServiceTimeoutError

ENGINE_PACKAGES = ("docker.io", "debootstrap", "debian-archive-keyring")
INSTALL_HINT = "install Docker (Debian: `apt-get install docker.io`, as root) and start it, or use the local backend"
READY_TIMEOUT_S = 60.0
INFO_TIMEOUT_S = 10.0
POLL_S = 0.2
# Where a dockerd started by anything else (an init script, systemd's docker.service) records its pid.
SYSTEM_PIDFILE = Path("/var/run/docker.pid")
CONTAINERD_PIDFILE = Path("/var/run/docker/containerd/containerd.pid")


def _quiet(_message: str) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Engine:
    """A Docker engine that answered ``docker info``.

    ``started`` is True when this call launched ``dockerd``; ``seconds`` is the wall time of the call (install,
    start and wait included); ``log`` is the daemon's log when this module started it.
    """

    docker: str
    version: str
    started: bool
    seconds: float
    log: Path | None = None


def default_home() -> Path:
    return PlatformConfig().cache_dir / "dockerd"


def find_dockerd() -> str | None:
    return _proc.which("dockerd", "/usr/bin", "/usr/sbin", "/usr/local/bin")


def dockerd_command(dockerd: str) -> list[str]:
    """The daemon with Docker's defaults: socket ``/var/run/docker.sock``, data in ``/var/lib/docker``.

    Defaults, so every ``docker`` CLI and library on the machine finds it without a ``DOCKER_HOST``.
    """
    return [dockerd]


def engine_version(docker: str, timeout_s: float = INFO_TIMEOUT_S) -> str | None:
    """The engine's version if ``docker info`` answers, else None."""
    try:
        result = _proc.run([docker, "info", "--format", "{{.ServerVersion}}"], timeout=timeout_s)
    except InfraError:
        return None
    version = result.stdout.strip()
    return version if result.returncode == 0 and version else None


def clear_stale_system_pidfile() -> bool:
    """Remove ``/var/run/docker.pid`` when no dockerd runs under its pid; True when removed.

    dockerd refuses to start while the process in that file exists ("pid file found, ensure docker is not
    running"), and it only checks that *some* process has the pid. After a machine's dockerd is killed, its pid
    is soon reused by an unrelated program, and no dockerd could start again until the file went. The pid file
    of the containerd that dockerd supervises is cleared the same way: dockerd would take the unrelated process
    for its containerd, wait on it, and finally kill it.
    """
    _clear_stale(CONTAINERD_PIDFILE, "containerd")
    return _clear_stale(SYSTEM_PIDFILE, "dockerd")


def _clear_stale(pidfile: Path, marker: str) -> bool:
    if not pidfile.exists():
        return False
    pid = _proc.read_pidfile(pidfile)
    if pid is not None and _proc.pid_alive(pid):
        cmdline = _proc.process_cmdline(pid)  # None for a kernel thread, which may have taken the pid too
        if cmdline is not None and marker in cmdline:
            return False
    pidfile.unlink(missing_ok=True)
    return True


def running_dockerd(home: Path) -> int | None:
    """Pid of a dockerd that runs already: the one we started, or one whose pid is in ``/var/run/docker.pid``."""
    ours = _proc.owned_pid(home / "dockerd.pid", marker="dockerd")
    if ours is not None:
        return ours
    pid = _proc.read_pidfile(SYSTEM_PIDFILE)
    if pid is not None and _proc.pid_alive(pid):
        cmdline = _proc.process_cmdline(pid)
        if cmdline is not None and "dockerd" in cmdline:
            return pid
    return None


def ensure_engine(
    progress: Callable[[str], None] | None = None,
    *,
    install: bool,
    home: Path | None = None,
    timeout_s: float = READY_TIMEOUT_S,
) -> Engine:
    """Return a Docker engine that answers, starting (and with ``install``, installing) one when needed.

    Raises :class:`DependencyMissingError` when there is no engine and none may be started here (not root, no
    ``dockerd`` and no permission to install it), :class:`ServiceDiedError` when ``dockerd`` exits while starting
    and :class:`ServiceTimeoutError` when it does not answer within ``timeout_s``; both carry its log's last lines.
    """
    say = progress or _quiet
    begin = time.monotonic()
    docker = find_docker()
    if docker is not None and (version := engine_version(docker)) is not None:
        return Engine(docker, version, started=False, seconds=time.monotonic() - begin)
    home = (home or default_home()).expanduser().resolve()
    with _proc.file_lock(home / ".lock"):
        docker = find_docker()
        if docker is not None and (version := engine_version(docker)) is not None:  # started while we waited
            return Engine(docker, version, started=False, seconds=time.monotonic() - begin)
        dockerd = find_dockerd()
        if dockerd is None or docker is None:
            if not install:
                msg = f"no Docker engine answers `docker info` and `dockerd` is not installed; {INSTALL_HINT}"
                raise DependencyMissingError(msg)
            apt.apt_install(ENGINE_PACKAGES, say, hint=INSTALL_HINT)
            dockerd, docker = find_dockerd(), find_docker()
            if dockerd is None or docker is None:
                packages = " ".join(ENGINE_PACKAGES)
                msg = f"installed {packages} but `dockerd` or `docker` is still missing; {INSTALL_HINT}"
                raise DependencyMissingError(msg)
        log = home / "dockerd.log"
        pid = running_dockerd(home)
        started = False
        if pid is None:
            if os.geteuid() != 0:
                msg = (
                    f"no Docker engine answers `{docker} info`; starting {dockerd!r} needs root "
                    "(`sudo systemctl start docker`, or run as root)"
                )
                raise DependencyMissingError(msg)
            if clear_stale_system_pidfile():
                say(f"removed {SYSTEM_PIDFILE}: no dockerd runs under its pid")
            say(f"starting the Docker engine ({dockerd}; log {log}) ...")
            pid = _proc.spawn_detached(dockerd_command(dockerd), out=log, cwd=home)
            _proc.write_pidfile(home / "dockerd.pid", pid)
            started = True
        else:
            say(f"waiting for the Docker engine (dockerd pid {pid}) ...")
        version = _wait_ready(docker, pid, log, timeout_s)
    seconds = time.monotonic() - begin
    say(f"Docker engine {version} answers ({seconds:.1f} s)")
    return Engine(docker, version, started=started, seconds=seconds, log=log if started else None)


def _wait_ready(docker: str, pid: int, log: Path, timeout_s: float) -> str:
    """Poll ``docker info``; fail fast if the daemon exits. ``log`` is read only for the error message."""
    deadline = time.monotonic() + timeout_s
    while True:
        version = engine_version(docker, timeout_s=max(1.0, min(INFO_TIMEOUT_S, deadline - time.monotonic())))
        if version is not None:
            return version
        if not _proc.pid_alive(pid):
            tail = _proc.tail(log, 15)
            msg = f"dockerd (pid {pid}) exited before `docker info` answered; last lines of {log}:\n{tail}"
            raise ServiceDiedError(msg)
        if time.monotonic() > deadline:
            msg = (
                f"dockerd (pid {pid}) did not answer `docker info` within {timeout_s:g} s; "
                f"last lines of {log}:\n{_proc.tail(log, 15)}"
            )
            raise ServiceTimeoutError(msg)
        time.sleep(POLL_S)
