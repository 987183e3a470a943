"""Process plumbing shared by the launchers: run a command, start a daemon, pid files, locks, log tails.

Every child process of the platform is started here, always from an argument list, never from a shell
string built from input.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from slipstream.infra.exceptions import InfraError

# `sh -c` detaches the daemon: the shell backgrounds it, prints its pid and exits, so the daemon is
# re-parented to init. It is then never our child: no zombie, no "subprocess still running" warning,
# and a later `down()` from another process sees exactly what this one would.
_SPAWN_SCRIPT = 'out=$1; shift; "$@" </dev/null >>"$out" 2>&1 & echo $!'


def which(program: str, *extra_dirs: str) -> str | None:
    """Absolute path of ``program`` on PATH, else in ``extra_dirs`` (e.g. ``/usr/sbin``), else None."""
    found = shutil.which(program)
    if found:
        return found
    for directory in extra_dirs:
        candidate = Path(directory) / program
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def inherited_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment plus ``extra``, for tools that need PATH, HOME or DOCKER_HOST."""
    return {**os.environ, **extra}


def run(
    cmd: Sequence[str], *, timeout: float, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` to completion, capturing text output; never raises on a non-zero exit.

    A missing program or a timeout becomes :class:`InfraError` naming the command.
    """
    try:
        return subprocess.run(  # argument list from the launchers, no shell
            list(cmd),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            env=None if env is None else dict(env),
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError as exc:
        msg = f"cannot run {cmd[0]!r}: program not found"
        raise InfraError(msg) from exc
    except subprocess.TimeoutExpired as exc:
        msg = f"{' '.join(cmd)!r} did not finish within {timeout:g} s"
        raise InfraError(msg) from exc


def spawn_detached(cmd: Sequence[str], *, out: Path, cwd: Path) -> int:
    """Start ``cmd`` as a daemon in its own session, stdout and stderr appended to ``out``; return its pid."""
    out.parent.mkdir(parents=True, exist_ok=True)
    shell = which("sh", "/bin") or "/bin/sh"
    result = subprocess.run(  # fixed script; the command travels as positional arguments
        [shell, "-c", _SPAWN_SCRIPT, "slipstream-spawn", str(out), *cmd],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd,
        start_new_session=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    pid_text = result.stdout.strip()
    if result.returncode != 0 or not pid_text.isdigit():
        msg = f"could not start {cmd[0]!r} (exit {result.returncode}): {result.stderr.strip()[-500:]!r}"
        raise InfraError(msg)
    return int(pid_text)


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    stat = Path(f"/proc/{pid}/stat")
    try:
        # Field 3 is the state; the command name before it is in parentheses and may contain spaces.
        state = stat.read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no procfs (macOS): kill(0) is all we have
    return state not in ("Z", "X")


def process_cmdline(pid: int) -> str | None:
    """The command line of ``pid`` as one string, or None if it cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        ps = which("ps", "/bin", "/usr/bin")
        if ps is None:
            return None
        result = run([ps, "-o", "command=", "-p", str(pid)], timeout=5)
        return result.stdout.strip() or None
    return raw.replace(b"\0", b" ").decode(errors="replace").strip() or None


def owned_pid(pidfile: Path, marker: str) -> int | None:
    """The pid in ``pidfile`` if that process is alive and its command line contains ``marker``.

    The marker (a path only our process has on its command line) keeps a recycled pid from being taken
    for ours. A pid file that fails the check is stale and is removed.
    """
    pid = read_pidfile(pidfile)
    if pid is None:
        return None
    cmdline = process_cmdline(pid) if pid_alive(pid) else None
    if cmdline is not None and marker in cmdline:
        return pid
    pidfile.unlink(missing_ok=True)
    return None


def read_pidfile(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def write_pidfile(path: Path, pid: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(path)


def signal_pid(pid: int, signum: int) -> bool:
    """Send ``signum`` to ``pid`` without waiting; False if it no longer exists."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return False
    return True


def terminate(pid: int, *, grace_s: float) -> bool:
    """SIGTERM ``pid``, wait up to ``grace_s``, then SIGKILL. True if it had to be killed."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return False
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return True


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a text file, or a note that it is missing."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode(errors="replace")
    except OSError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path``, so two ``up()`` calls never start two daemons."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
