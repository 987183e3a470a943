"""The demo's child processes — the scorers (`slipstream score-stream`, `score-stream --reco`, `serve`), the
watchers (`slipstream shadow`, `slipstream outcomes`) and the closed loop (`slipstream drift`, `slipstream loop`,
`slipstream ui`) — started with this run's settings, their output in log
files, their CPU time read from ``/proc``, stopped with SIGTERM (then SIGKILL), and told to stop if the demo itself
dies."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from slipstream.app import Slipstream
from slipstream.demo.timeline import Namespace

PR_SET_PDEATHSIG = 1


def _death_signal() -> Callable[[], None] | None:
    """What the child runs before exec: ask for SIGTERM when the demo dies without stopping it (Linux).

    The C function is looked up here, in the parent: loading a library between fork and exec can deadlock."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    """A `slipstream` command run as a child process, its output in a log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    _handle: IO[bytes]

    @classmethod
    def start(cls, name: str, args: list[str], env: Mapping[str, str], log: Path) -> Child:
        log.parent.mkdir(parents=True, exist_ok=True)
        handle = log.open("wb")
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module, our own arguments
            [sys.executable, "-m", "slipstream", *args],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the demo, which stops its children in order
            preexec_fn=_death_signal(),  # one system call, nothing that takes a lock
        )
        return cls(name, proc, log, handle)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def cpu_s(self) -> float | None:
        """CPU seconds (user + system) the child has used so far, with its waited-for children; None once gone or
        off Linux."""
        return cpu_seconds(self.proc.pid)

    def stop(self, timeout: float = 15.0) -> int:
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._handle.close()
        return int(self.proc.returncode)


def start_children(
    app: Slipstream,
    ns: Namespace,
    port: int,
    logs: Path,
    *,
    policy: Path | None = None,
    ui_port: int | None = None,
) -> dict[str, Child]:
    """The run's child processes, by name: the Kafka scorers of transactions and of recommendation requests, the
    HTTP scorer on ``port``, the shadow consumer (every challenger on the champions' inputs) and the label joiner;
    with a ``policy``, the closed loop too — the drift monitor (daily event-time windows) and the loop under that
    policy — and, with a ``ui_port``, the dashboard on it."""
    env = child_env(app, ns)
    commands = {
        "score-stream": ["score-stream", "--quiet", "--log-level", "warning"],
        "score-stream-reco": ["score-stream", "--reco", "--quiet", "--log-level", "warning"],
        "serve": ["serve", "--port", str(port), "--log-level", "warning"],
        "shadow": ["shadow"],
        "outcomes": ["outcomes"],
    }
    if policy is not None:
        commands["drift"] = ["drift", "--window-s", "86400"]
        commands["loop"] = ["loop", "--policy", str(policy), "--log-level", "info"]
    if ui_port is not None:
        commands["ui"] = ["ui", "--port", str(ui_port), "--refresh-s", "10", "--retain-days", "30"]
    return {name: Child.start(name, args, env, logs / f"{name}.log") for name, args in commands.items()}


def cpu_seconds(pid: int) -> float | None:
    """CPU seconds of ``pid`` from ``/proc/<pid>/stat``: utime + stime + cutime + cstime; None if unreadable."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return None


def cpu_snapshot(children: Mapping[str, Child]) -> dict[str, float]:
    """CPU seconds used so far by each child (by name), by this process (``demo``) and by its other children (the
    feature engine's stage processes, ``engine``)."""
    times = os.times()
    out = {"demo": times.user + times.system}
    ours = {child.proc.pid for child in children.values()}
    for name, child in children.items():
        used = child.cpu_s()
        if used is not None:
            out[name] = used
    out["engine"] = sum(cpu_seconds(pid) or 0.0 for pid in children_of(os.getpid()) if pid not in ours)
    return out


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(app: Slipstream, ns: Namespace) -> dict[str, str]:
    """The children's settings: this run's namespace, the services this process uses, the same state dir."""
    env = dict(os.environ)
    env.update(
        {
            "SLIPSTREAM_TOPIC_PREFIX": ns.prefix,
            "SLIPSTREAM_FEAST_PROJECT": ns.project,
            "SLIPSTREAM_STATE_DIR": str(app.settings.state_dir.resolve()),
            **app.kafka_environment(),
            "REDIS_URL": app.redis_url,
        }
    )
    return env


RUN_VARIABLE = "SLIPSTREAM_DEMO_RUN"  # every process of a run inherits it: how a later run finds orphans


def _stat(pid_dir: Path) -> tuple[str, int] | None:
    """(state, parent pid) of a /proc entry."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = (pid_dir / "stat").read_text().rsplit(")", 1)[1].split()
        return fields[0], int(fields[1])
    return None


def _resource_tracker(pid_dir: Path) -> bool:
    """multiprocessing's resource tracker: it exits with its parent by design."""
    with contextlib.suppress(OSError):
        return b"resource_tracker" in (pid_dir / "cmdline").read_bytes()
    return False


def children_of(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` but for the resource tracker (Linux /proc; empty elsewhere)."""
    out = []
    for pid_dir in Path("/proc").glob("[0-9]*"):
        stat = _stat(pid_dir)
        if stat is not None and stat[1] == pid and stat[0] != "Z" and not _resource_tracker(pid_dir):
            out.append(int(pid_dir.name))
    return out


def processes_of_run(run_id: str) -> list[int]:
    """Live processes (other than this one) started by the run ``run_id``, wherever they were re-parented."""
    needle = f"{RUN_VARIABLE}={run_id}".encode()
    out = []
    for pid_dir in Path("/proc").glob("[0-9]*"):
        if int(pid_dir.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in (pid_dir / "environ").read_bytes().split(b"\0"):
                stat = _stat(pid_dir)
                if stat is not None and stat[0] != "Z" and not _resource_tracker(pid_dir):
                    out.append(int(pid_dir.name))
    return out


def terminate(pids: list[int], timeout: float = 10.0) -> list[int]:
    """SIGTERM ``pids``, SIGKILL those still there after ``timeout``; return the ones that would not go."""
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if _running(p)]
    for pid in alive:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    return [p for p in alive if _running(p)]


def _running(pid: int) -> bool:
    stat = _stat(Path(f"/proc/{pid}"))
    return stat is not None and stat[0] != "Z"
