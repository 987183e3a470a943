"""Install Debian packages with ``apt-get``, only as root and only on a system that has it.

The first install is tried with the package lists as they are; if it fails (a fresh machine has empty lists),
``apt-get update`` runs and the install is retried once. Anywhere apt cannot be used the caller gets
:class:`DependencyMissingError` with the command to run by hand.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from slipstream.infra import _proc
from slipstream.infra.exceptions import DependencyMissingError

APT_TIMEOUT_S = 900.0


def can_install() -> bool:
    """True when this process may install packages: root, with ``apt-get`` present."""
    return os.geteuid() == 0 and _proc.which("apt-get", "/usr/bin") is not None


def install_command(apt_get: str, packages: Sequence[str]) -> list[str]:
    return [apt_get, "install", "-y", "-q", "--no-install-recommends", *packages]


def apt_install(packages: Sequence[str], progress: Callable[[str], None], *, hint: str) -> None:
    """``apt-get install -y --no-install-recommends <packages>`` as root; ``hint`` says what to do otherwise."""
    apt_get = _proc.which("apt-get", "/usr/bin")
    if apt_get is None or os.geteuid() != 0:
        who = "no apt-get on this system" if apt_get is None else f"not root (uid {os.geteuid()})"
        msg = f"cannot install {' '.join(packages)}: {who}; {hint}"
        raise DependencyMissingError(msg)
    env = _proc.inherited_env({"DEBIAN_FRONTEND": "noninteractive"})
    install = install_command(apt_get, packages)
    progress(f"installing {' '.join(packages)} with apt-get ...")
    result = _proc.run(install, timeout=APT_TIMEOUT_S, env=env)
    if result.returncode != 0:
        progress("apt-get install failed; running apt-get update and retrying ...")
        _proc.run([apt_get, "update", "-q"], timeout=APT_TIMEOUT_S, env=env)
        result = _proc.run(install, timeout=APT_TIMEOUT_S, env=env)
    if result.returncode != 0:
        output = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        msg = f"{' '.join(install)!r} failed (exit {result.returncode}); {hint}\n{output}"
        raise DependencyMissingError(msg)
