"""A real Redis server run from the system's ``redis-server`` binary, without Docker.

State lives in ``<state_dir>/redis``: ``redis.pid``, ``redis.log`` and ``redis.out``. Nothing is persisted
(``--save "" --appendonly no``): this is a cache for online features, rebuilt from Kafka. Only the process
in ``redis.pid`` is ever stopped.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from slipstream.infra import _proc, probes
from slipstream.infra.base import ServiceStatus
from slipstream.infra.config import REDIS_HOST, PlatformConfig
from slipstream.infra.exceptions import DependencyMissingError, ServiceDiedError, ServiceTimeoutError
from slipstream.infra.ports import check_ports_free, port_accepts
from slipstream.infra.redis_tls import USER, ensure_tls_files, tls_files, tls_server_args

INSTALL_HINT = "install it with `apt-get install -y redis-server` (Debian/Ubuntu) or `brew install redis` (macOS)"
SEARCH_DIRS = ("/usr/bin", "/usr/sbin", "/usr/local/bin", "/opt/homebrew/bin")
STOP_GRACE_S = 10.0
APT_TIMEOUT_S = 900.0
POLL_S = 0.05
# Redis rewrites its process title to "redis-server 127.0.0.1:<port>", so that is what a pid must show.
_CMDLINE_MARKER = "redis-server"


def _quiet(_message: str) -> None:
    return None


def find_redis_server() -> str:
    """Path of ``redis-server``, or :class:`DependencyMissingError` saying how to install it."""
    found = _proc.which("redis-server", *SEARCH_DIRS)
    if found is None:
        msg = f"`redis-server` not found on PATH or in {', '.join(SEARCH_DIRS)}; {INSTALL_HINT}"
        raise DependencyMissingError(msg)
    return found


def redis_command(redis_server: str, config: PlatformConfig, home_dir: str) -> list[str]:
    """A foreground, non-persistent Redis bound to the loopback interface; with ``config.redis_tls``, TLS only and
    the ACL file (:mod:`slipstream.infra.redis_tls`, whose files must exist)."""
    if config.redis_tls:
        listen = tls_server_args(tls_files(config), config.redis_port)
    else:
        listen = ["--port", str(config.redis_port)]
    return [
        redis_server,
        *listen,
        "--bind",
        REDIS_HOST,
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        home_dir,
        "--logfile",
        f"{home_dir}/redis.log",
        "--pidfile",
        f"{home_dir}/redis.pid",
        "--daemonize",
        "no",
    ]


def ensure_installed(progress: Callable[[str], None] = _quiet) -> str:
    """Return the path of ``redis-server``, installing the Debian package first when we can.

    Installs only as root on a system with ``apt-get``; runs ``apt-get update`` and retries once if the
    first install fails (a fresh image has empty package lists). Anywhere else it raises
    :class:`DependencyMissingError` with the command to run.
    """
    try:
        return find_redis_server()
    except DependencyMissingError:
        apt_get = _proc.which("apt-get", "/usr/bin")
        if apt_get is None or os.geteuid() != 0:
            raise
    env = _proc.inherited_env({"DEBIAN_FRONTEND": "noninteractive"})
    install = [apt_get, "install", "-y", "--no-install-recommends", "redis-server"]
    progress("installing redis-server with apt-get ...")
    result = _proc.run(install, timeout=APT_TIMEOUT_S, env=env)
    if result.returncode != 0:
        progress("apt-get install failed; running apt-get update and retrying ...")
        _proc.run([apt_get, "update"], timeout=APT_TIMEOUT_S, env=env)
        result = _proc.run(install, timeout=APT_TIMEOUT_S, env=env)
    if result.returncode != 0:
        output = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        msg = f"{' '.join(install)!r} failed (exit {result.returncode}); {INSTALL_HINT}\n{output}"
        raise DependencyMissingError(msg)
    return find_redis_server()


class LocalRedis:
    """Starts, stops and inspects the local Redis described by a :class:`PlatformConfig`."""

    name = "redis"
    backend = "local"

    def __init__(self, config: PlatformConfig, progress: Callable[[str], None] = _quiet) -> None:
        self.config = config
        self._progress = progress
        self.home = config.redis_state_dir.expanduser().resolve()
        self.pidfile = self.home / "redis.pid"
        self.log_file = self.home / "redis.log"
        self.out_file = self.home / "redis.out"
        self._lock = self.home / ".lock"

    def up(self) -> ServiceStatus:
        """Start Redis unless it already runs, and return once it answers ``PING``."""
        with _proc.file_lock(self._lock):
            pid = self.running_pid()
            if pid is None:
                redis_server = find_redis_server()
                check_ports_free(REDIS_HOST, {"redis_port": self.config.redis_port})
                if self.config.redis_tls:
                    ensure_tls_files(tls_files(self.config))
                self._progress(f"starting Redis on {self.config.redis_url} ...")
                cmd = redis_command(redis_server, self.config, str(self.home))
                pid = _proc.spawn_detached(cmd, out=self.out_file, cwd=self.home)
                _proc.write_pidfile(self.pidfile, pid)
        return self._wait_ready(pid)

    def down(self) -> None:
        """Stop the Redis we started. A no-op if it is not running."""
        with _proc.file_lock(self._lock):
            pid = self.running_pid()
            if pid is not None:
                self._progress(f"stopping Redis (pid {pid}) ...")
                _proc.terminate(pid, grace_s=STOP_GRACE_S)
            self.pidfile.unlink(missing_ok=True)

    def status(self) -> ServiceStatus:
        pid = self.running_pid()
        if pid is None:
            taken = port_accepts(REDIS_HOST, self.config.redis_port)
            detail = f"not started by this platform, but port {self.config.redis_port} accepts connections"
            return self._status(up=False, version=None, pid=None, detail=detail if taken else "not running")
        version = self._probe()
        if version is None:
            return self._status(up=False, version=None, pid=pid, detail="process running but not answering PING")
        return self._status(up=True, version=version, pid=pid, detail="")

    def _wait_ready(self, pid: int) -> ServiceStatus:
        deadline = time.monotonic() + self.config.startup_timeout_s
        while True:
            if not _proc.pid_alive(pid):
                self.pidfile.unlink(missing_ok=True)
                msg = f"Redis (pid {pid}) exited during start-up; last lines:\n{self._log_tail()}"
                raise ServiceDiedError(msg)
            version = self._probe()
            if version is not None:
                return self._status(up=True, version=version, pid=pid, detail="")
            if time.monotonic() > deadline:
                msg = (
                    f"Redis (pid {pid}) did not answer PING on {self.config.redis_url} within "
                    f"{self.config.startup_timeout_s:g} s; last lines:\n{self._log_tail()}"
                )
                raise ServiceTimeoutError(msg)
            time.sleep(POLL_S)

    def _probe(self) -> str | None:
        login = None
        if self.config.redis_tls:
            files = tls_files(self.config)
            try:
                password = files.password_file.read_text(encoding="utf-8").strip()
            except OSError:
                return None
            login = probes.RedisLogin(str(files.ca_cert), USER, password)
        return probes.redis_version(REDIS_HOST, self.config.redis_port, timeout_s=1.0, tls=login)

    def running_pid(self) -> int | None:
        """Pid of the process we started, if it is still running (no network request)."""
        return _proc.owned_pid(self.pidfile, marker=_CMDLINE_MARKER)

    def _log_tail(self) -> str:
        log, out = self.log_file, self.out_file
        return "\n".join([f"--- {log}", _proc.tail(log, 30), f"--- {out}", _proc.tail(out, 15)])

    def _status(self, *, up: bool, version: str | None, pid: int | None, detail: str) -> ServiceStatus:
        return ServiceStatus(
            name=self.name,
            up=up,
            address=self.config.redis_url,
            version=version,
            backend=self.backend,
            pid=pid,
            detail=detail,
        )
