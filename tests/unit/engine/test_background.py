"""A co-located engine stage gives the CPU away: own session, autogroup nice 19, idle class (each best effort)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from slipstream.streams.engine.background import LOWEST_AUTOGROUP_NICE, yield_cpu

_CHILD = """
import json, os, sys
from pathlib import Path
from slipstream.streams.engine.background import yield_cpu
refused = yield_cpu(nice=int(sys.argv[1]), idle_class=sys.argv[2] == "1", autogroup=Path(sys.argv[3]))
print(json.dumps({
    "refused": refused,
    "nice": os.nice(0),
    "policy": os.sched_getscheduler(0),
    "session_leader": os.getsid(0) == os.getpid(),
    "autogroup": Path(sys.argv[3]).read_text() if Path(sys.argv[3]).exists() else None,
}))
"""


def _child(tmp_path: Path, *, nice: int, idle_class: bool, autogroup: bool) -> dict[str, object]:
    group = tmp_path / "autogroup"
    if autogroup:
        group.write_text("/autogroup-1 nice 0\n")
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(nice), "1" if idle_class else "0", str(group)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[3],
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_idle_class_takes_a_session_the_lowest_autogroup_weight_and_sched_idle(tmp_path: Path) -> None:
    got = _child(tmp_path, nice=10, idle_class=True, autogroup=True)
    assert got["refused"] == []
    assert got["session_leader"] is True
    assert got["autogroup"] == f"{LOWEST_AUTOGROUP_NICE}\n"
    assert got["policy"] == os.SCHED_IDLE
    assert got["nice"] == min(19, os.nice(0) + 10)


def test_without_the_idle_class_only_the_nice_value_changes(tmp_path: Path) -> None:
    got = _child(tmp_path, nice=5, idle_class=False, autogroup=True)
    assert got["refused"] == []
    assert got["session_leader"] is False
    assert got["autogroup"] == "/autogroup-1 nice 0\n"  # untouched
    assert got["policy"] == os.sched_getscheduler(0)  # this process's own class, unchanged
    assert got["nice"] == min(19, os.nice(0) + 5)


def test_a_kernel_without_autogroup_is_not_a_refusal(tmp_path: Path) -> None:
    got = _child(tmp_path, nice=0, idle_class=True, autogroup=False)
    assert not any("autogroup" in r for r in got["refused"])  # type: ignore[attr-defined]
    assert got["autogroup"] is None


class _Busy:
    """An autogroup file that answers EAGAIN a few times (Linux's limit of one change per 100 ms)."""

    def __init__(self, busy: int, error: int = errno.EAGAIN) -> None:
        self.busy = busy
        self.error = error
        self.written: list[str] = []

    def exists(self) -> bool:
        return True

    def write_text(self, text: str) -> int:
        if self.busy:
            self.busy -= 1
            raise OSError(self.error, os.strerror(self.error))
        self.written.append(text)
        return len(text)


def test_a_busy_autogroup_is_retried_and_other_refusals_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_setscheduler", lambda *_: None)  # this test process must keep its class
    monkeypatch.setattr(os, "getsid", lambda _pid: os.getpid())  # as after setsid()
    sleeps: list[float] = []
    busy = _Busy(3)
    refused = yield_cpu(nice=0, idle_class=True, autogroup=busy, setsid=lambda: 0, sleep=sleeps.append)  # type: ignore[arg-type]
    assert busy.written == ["19\n"] and len(sleeps) == 3 and refused == []

    denied = _Busy(1, errno.EACCES)
    refused = yield_cpu(nice=0, idle_class=True, autogroup=denied, setsid=lambda: 0, sleep=sleeps.append)  # type: ignore[arg-type]
    assert len(refused) == 1 and refused[0].startswith("autogroup nice 19:")

    def no_session() -> int:
        raise PermissionError(errno.EPERM, "not permitted")

    monkeypatch.setattr(os, "getsid", lambda _pid: -1)  # not a session leader, and it cannot become one
    untouched = _Busy(0)
    refused = yield_cpu(nice=0, idle_class=True, autogroup=untouched, setsid=no_session, sleep=sleeps.append)  # type: ignore[arg-type]
    assert refused == [
        "a session of its own: [Errno 1] not permitted",
        "autogroup nice 19: not in a session of its own",  # the parent's autogroup is everyone's there
    ]
    assert untouched.written == []


def test_a_platform_without_the_idle_class_names_it_and_keeps_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "SCHED_IDLE", raising=False)
    monkeypatch.setattr(os, "getsid", lambda _pid: os.getpid())  # as after setsid()
    group = _Busy(0)
    refused = yield_cpu(nice=0, idle_class=True, autogroup=group, setsid=lambda: 0)  # type: ignore[arg-type]
    assert refused == ["the idle scheduling class: not on this platform"]
    assert group.written == ["19\n"]
