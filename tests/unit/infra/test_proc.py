"""Daemon plumbing on a harmless `sleep`: detach, pid files, ownership check, terminate, log tails."""

from __future__ import annotations

import os
import time
from pathlib import Path

from slipstream.infra import _proc


def test_spawn_owned_terminate(tmp_path: Path) -> None:
    marker = str(tmp_path / "unique-marker")
    pid = _proc.spawn_detached(
        ["sh", "-c", "echo started; exec sleep 60", marker], out=tmp_path / "x.out", cwd=tmp_path
    )
    pidfile = tmp_path / "x.pid"
    _proc.write_pidfile(pidfile, pid)
    deadline = time.monotonic() + 10  # under load the shell may not have run `echo` and `exec` yet: wait for both
    while time.monotonic() < deadline:
        cmdline = _proc.process_cmdline(pid) or ""
        if _proc.tail(tmp_path / "x.out") == "started" and cmdline.startswith("sleep"):
            break
        time.sleep(0.01)
    try:
        assert _proc.pid_alive(pid)
        assert os.getsid(pid) != os.getsid(0)  # its own session: a Ctrl-C in our terminal does not reach it
        assert _proc.owned_pid(pidfile, marker="sleep 60") == pid
    finally:
        killed = _proc.terminate(pid, grace_s=10)
    assert not killed
    assert not _proc.pid_alive(pid)
    # A dead pid in the pid file is stale: reported as not ours and the file is removed.
    assert _proc.owned_pid(pidfile, marker="sleep 60") is None
    assert not pidfile.exists()
    assert _proc.tail(tmp_path / "x.out") == "started"


def test_recycled_pid_is_not_ours(tmp_path: Path) -> None:
    pidfile = tmp_path / "x.pid"
    _proc.write_pidfile(pidfile, os.getpid())  # alive, but a pytest process, not the service
    assert _proc.owned_pid(pidfile, marker="kafka.Kafka /nowhere/server.properties") is None
    assert not pidfile.exists()


def test_pidfile_garbage(tmp_path: Path) -> None:
    pidfile = tmp_path / "x.pid"
    assert _proc.read_pidfile(pidfile) is None
    pidfile.write_text("not a pid")
    assert _proc.read_pidfile(pidfile) is None


def test_tail(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert _proc.tail(log, 3) == "line 97\nline 98\nline 99"
    assert "does not exist" in _proc.tail(tmp_path / "missing.log")
