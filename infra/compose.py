"""Run ``deploy/compose/docker-compose.yml`` (Slipstream's whole stack) with whichever Compose this machine has.

The Compose v2 plugin (``docker compose``) when it answers, else the standalone ``docker-compose`` (Debian bookworm
ships only v1.29 of it, as package ``docker-compose``; no plugin). :func:`ensure_compose` installs that package,
as root with apt, when neither is there and ``install`` allows it. Both read the same file: no ``version:`` key,
``network_mode: host``, ``depends_on`` conditions and YAML anchors, which Compose 1.29 and v2 both understand.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from slipstream.infra import _proc, apt
from slipstream.infra.exceptions import DependencyMissingError, InfraError

COMPOSE_PACKAGES = ("docker-compose",)
INSTALL_HINT = "install Compose (Debian: `apt-get install docker-compose`, as root, or the Docker Compose v2 plugin)"
VERSION_TIMEOUT_S = 15.0
COMMAND_TIMEOUT_S = 600.0


def _quiet(_message: str) -> None:
    return None


def stack_file(checkout: Path) -> Path:
    return checkout / "deploy" / "compose" / "docker-compose.yml"


def _answers(cmd: list[str]) -> bool:
    try:
        return _proc.run([*cmd, "version"], timeout=VERSION_TIMEOUT_S).returncode == 0
    except InfraError:
        return False


def find_compose(docker: str) -> list[str] | None:
    """``[docker, "compose"]`` when the v2 plugin answers, else ``["/usr/bin/docker-compose"]``, else None."""
    if _answers([docker, "compose"]):
        return [docker, "compose"]
    standalone = _proc.which("docker-compose", "/usr/bin", "/usr/local/bin")
    return [standalone] if standalone is not None and _answers([standalone]) else None


def ensure_compose(docker: str, progress: Callable[[str], None] = _quiet, *, install: bool) -> list[str]:
    """The Compose command line to use, installing Debian's ``docker-compose`` when none answers and ``install``."""
    found = find_compose(docker)
    if found is not None:
        return found
    if not install:
        msg = f"neither `{docker} compose` nor `docker-compose` answers; {INSTALL_HINT}"
        raise DependencyMissingError(msg)
    apt.apt_install(COMPOSE_PACKAGES, progress, hint=INSTALL_HINT)
    found = find_compose(docker)
    if found is None:
        msg = f"installed {' '.join(COMPOSE_PACKAGES)} but `docker-compose version` still fails; {INSTALL_HINT}"
        raise DependencyMissingError(msg)
    return found


def compose_command(compose: Sequence[str], file: Path, project: str, *args: str) -> list[str]:
    """``<compose> -f <file> -p <project> <args...>``."""
    return [*compose, "-f", str(file), "-p", project, *args]


class ComposeStack:
    """One project of the stack: ``up``, ``down`` and ``ps`` with its variables (ports, state dir, images)."""

    def __init__(self, compose: Sequence[str], file: Path, project: str, env: Mapping[str, str]) -> None:
        self.compose = list(compose)
        self.file = file
        self.project = project
        self.env = dict(env)

    def run(self, *args: str, timeout: float = COMMAND_TIMEOUT_S) -> str:
        """Run one Compose command; its stdout, or :class:`InfraError` with its last lines."""
        cmd = compose_command(self.compose, self.file, self.project, *args)
        result = _proc.run(cmd, timeout=timeout, env=_proc.inherited_env(self.env))
        if result.returncode != 0:
            output = "\n".join((result.stdout + result.stderr).strip().splitlines()[-30:])
            msg = f"{' '.join(cmd)!r} failed (exit {result.returncode}):\n{output}"
            raise InfraError(msg)
        return result.stdout

    def up(self, *services: str) -> None:
        self.run("up", "-d", *services)

    def down(self, *, timeout_s: int = 10) -> None:
        """Stop and remove the containers, the network Compose made (none with host networking) and the volumes."""
        self.run("down", "--volumes", "--remove-orphans", "--timeout", str(timeout_s))

    def container_ids(self) -> list[str]:
        return self.run("ps", "-q").split()

    def logs(self, tail: int = 40) -> str:
        try:
            return self.run("logs", "--no-color", "--tail", str(tail), timeout=60)
        except InfraError as exc:
            return str(exc)
