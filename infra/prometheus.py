"""Prometheus for the shipped rules and for scraping Slipstream's processes: Debian's package, and a server of our own.

:func:`ensure_tools` finds ``prometheus`` and ``promtool`` (PATH, then ``/usr/bin``) and, as root where ``apt-get``
works, installs Debian's ``prometheus`` package when either is missing. The package's maintainer scripts would start
a system service listening on ``:9090``; while it installs, a ``policy-rc.d`` that refuses every service start is in
place (unless the system already has one), and afterwards, where systemd runs, the unit is disabled and stopped, so
installing leaves nothing running. :class:`PrometheusServer` runs one server with a given config on a free loopback
port, its storage in a folder of the caller's, waits until ``/-/ready`` answers, reads the HTTP API and stops it.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from slipstream.infra import _proc, apt
from slipstream.infra.exceptions import (
    DependencyMissingError,
    InfraConfigError,
    InfraError,
    ServiceDiedError,
    ServiceTimeoutError,
)
from slipstream.infra.ports import free_ports, port_accepts

PACKAGE = "prometheus"
INSTALL_HINT = (
    "install Debian's prometheus package (`apt-get install prometheus`) or put prometheus and promtool on PATH"
)
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
# Exit 101: "action forbidden by policy" (invoke-rc.d and deb-systemd-invoke start nothing).
_DENY_ALL = "#!/bin/sh\n# written by slipstream while it installs prometheus; removed afterwards\nexit 101\n"
SYSTEM_PORT = 9090  # where the package's service listens
READY_TIMEOUT_S = 30.0
_PORT_ATTEMPTS = 3


@dataclass(frozen=True)
class PrometheusTools:
    prometheus: str
    promtool: str


def find_tools() -> PrometheusTools | None:
    """Both programs, or None when either is missing."""
    prometheus = _proc.which("prometheus", "/usr/bin")
    promtool = _proc.which("promtool", "/usr/bin")
    return PrometheusTools(prometheus, promtool) if prometheus and promtool else None


@contextlib.contextmanager
def services_held(policy: Path = POLICY_RC_D) -> Iterator[None]:
    """No package may start a service while the block runs: a deny-all ``policy`` file unless one exists already
    (the system's own is kept as it is); ours is removed when the block ends."""
    if policy.exists():
        yield
        return
    policy.parent.mkdir(parents=True, exist_ok=True)
    policy.write_text(_DENY_ALL)
    policy.chmod(0o755)
    try:
        yield
    finally:
        policy.unlink(missing_ok=True)


def _quiet(_: str) -> None:
    pass


def ensure_tools(progress: Callable[[str], None] | None = None, *, install: bool = True) -> PrometheusTools:
    """``prometheus`` and ``promtool``, installing Debian's package first when either is missing (see module).

    Raises :class:`DependencyMissingError` when they are missing and cannot be installed here."""
    say = progress or _quiet
    tools = find_tools()
    if tools is not None:
        return tools
    if not install:
        msg = f"prometheus or promtool is not installed; {INSTALL_HINT}"
        raise DependencyMissingError(msg)
    listening_before = port_accepts("127.0.0.1", SYSTEM_PORT)
    with services_held():
        apt.apt_install((PACKAGE,), say, hint=INSTALL_HINT)
    _keep_system_service_off(say, listening_before)
    tools = find_tools()
    if tools is None:
        msg = f"installed {PACKAGE} but prometheus or promtool is still missing; {INSTALL_HINT}"
        raise DependencyMissingError(msg)
    return tools


def _keep_system_service_off(say: Callable[[str], None], listening_before: bool) -> None:
    """Disable the package's unit where systemd runs (it would start at the next boot), and stop a service that
    started anyway and now holds :9090."""
    systemctl = _proc.which("systemctl", "/usr/bin", "/bin")
    if systemctl is not None and Path("/run/systemd/system").is_dir():
        _proc.run([systemctl, "disable", "--now", f"{PACKAGE}.service"], timeout=60)
        say(f"disabled the {PACKAGE} system service (it is not needed: each run starts its own server)")
    if listening_before or not port_accepts("127.0.0.1", SYSTEM_PORT):
        return
    invoke = _proc.which("invoke-rc.d", "/usr/sbin", "/sbin")
    if invoke is not None:
        _proc.run([invoke, PACKAGE, "stop"], timeout=60)
    if port_accepts("127.0.0.1", SYSTEM_PORT):
        say(f"warning: something started by the {PACKAGE} package still listens on :{SYSTEM_PORT}")


def promtool(tools: PrometheusTools, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """``promtool <args>`` to completion (its exit code is the caller's to judge)."""
    return _proc.run([tools.promtool, *args], timeout=timeout)


@dataclass
class PrometheusServer:
    """One ``prometheus`` process of ours on ``127.0.0.1:port`` (a context manager: the block's end stops it)."""

    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    _handle: IO[bytes] = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(
        cls, tools: PrometheusTools, config: Path, data_dir: Path, *, timeout_s: float = READY_TIMEOUT_S
    ) -> PrometheusServer:
        """Start a server with ``config`` on a free loopback port, storage in ``data_dir``; return once it is ready.

        Raises :class:`InfraConfigError` for a config that is not a file, :class:`ServiceDiedError` (its log's last
        lines) when it exits, :class:`ServiceTimeoutError` when it is not ready within ``timeout_s``."""
        if not config.is_file():
            msg = f"prometheus config {str(config)!r} is not a file"
            raise InfraConfigError(msg)
        data_dir.mkdir(parents=True, exist_ok=True)
        attempt = 0
        while True:
            attempt += 1
            server = cls._spawn(tools, config.resolve(), data_dir, free_ports(1)[0])
            try:
                server._wait_ready(timeout_s)
            except ServiceDiedError:
                server.stop()
                taken = "address already in use" in _proc.tail(server.log, 5)
                if taken and attempt < _PORT_ATTEMPTS:  # another process took the free port first: another one
                    continue
                raise
            except BaseException:
                server.stop()
                raise
            return server

    @classmethod
    def _spawn(cls, tools: PrometheusTools, config: Path, data_dir: Path, port: int) -> PrometheusServer:
        log = data_dir / "prometheus.log"
        handle = log.open("ab")
        cmd = [
            tools.prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={data_dir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT, cwd=data_dir)
        return cls(port, proc, log, handle)

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                msg = (
                    f"prometheus exited with {self.proc.returncode} while starting; {self.log}:\n{_proc.tail(self.log)}"
                )
                raise ServiceDiedError(msg)
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:  # noqa: S310 - loopback
                    if response.status == 200:
                        return
            if time.monotonic() > deadline:
                late = f"prometheus on port {self.port} not ready within {timeout_s:g} s"
                msg = f"{late}; {self.log}:\n{_proc.tail(self.log)}"
                raise ServiceTimeoutError(msg)
            time.sleep(0.1)

    def api(self, path: str, **params: str) -> Any:
        """``GET /api/v1/<path>?<params>``'s ``data``; :class:`InfraError` naming the error when it is not a success."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        url = f"{self.url}/api/v1/{path}{query}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback, our own server
                body = json.load(response)
        except urllib.error.HTTPError as exc:  # 4xx/5xx carry the API's JSON error
            body = json.load(exc)
        except (OSError, ValueError) as exc:
            msg = f"prometheus API {path} {params}: {exc}"
            raise InfraError(msg) from exc
        if body.get("status") != "success":
            msg = f"prometheus API {path} {params}: {body.get('errorType')}: {body.get('error')}"
            raise InfraError(msg)
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's vector: ``[{"metric": {...labels}, "value": [time, "value"]}, ...]``."""
        data = self.api("query", query=expr)
        if data["resultType"] != "vector":
            msg = f"prometheus query {expr!r} gave a {data['resultType']}, not a vector"
            raise InfraError(msg)
        result: list[dict[str, Any]] = data["result"]
        return result

    def stop(self, grace_s: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after ``grace_s``; the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._handle.close()
        return int(self.proc.returncode)

    def __enter__(self) -> PrometheusServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


__all__ = ["PrometheusServer", "PrometheusTools", "ensure_tools", "find_tools", "promtool", "services_held"]
