"""How a co-located engine stage process gives the CPU away: its own session, the lowest autogroup weight, and
Linux's idle scheduling class.

Beside a scorer, the engine is not on anyone's latency path: the scorer stays exact while the engine lags (see
``serving/recent.py``). ``SCHED_IDLE`` alone is not enough on kernels with autogroup (``kernel.sched_autogroup_
enabled``, on by default in most desktop distributions). There the kernel first shares the CPU between
*sessions*, then between the tasks of each session. The idle class only ranks a task among the tasks of its own
session. Measured on a 2-vCPU VM at 1k events/s: Redis, which runs in a session of its own, waited up to 124 ms
for a CPU while the idle-class engine stages ran. So a stage first leaves its parent's session (a new session is
a new autogroup), then gives that autogroup the weight of nice 19, then enters the idle class.

Every step is best effort. A platform that refuses one (no autogroup, a sandbox without ``SCHED_IDLE``) keeps the
others, and :func:`yield_cpu` names what it could not do.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from pathlib import Path

AUTOGROUP = Path("/proc/self/autogroup")
LOWEST_AUTOGROUP_NICE = 19
# Without CAP_SYS_ADMIN, Linux accepts one autogroup change per 100 ms machine-wide (EAGAIN otherwise): stages
# starting together take turns.
_AUTOGROUP_TRIES = 8
_AUTOGROUP_RETRY_S = 0.11


def yield_cpu(
    *,
    nice: int,
    idle_class: bool,
    autogroup: Path = AUTOGROUP,
    setsid: Callable[[], object] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[str]:
    """Lower this process's claim on the CPU; returns one line per step that the platform refused.

    ``nice`` is added to the process's nice value. With ``idle_class``, the process also leaves its session
    (unless it already leads one), sets its autogroup's nice to 19 where ``autogroup`` exists, and enters
    ``SCHED_IDLE``.
    """
    refused: list[str] = []
    if nice:
        try:
            os.nice(nice)
        except OSError as exc:
            refused.append(f"nice +{nice}: {exc}")
    if not idle_class:
        return refused
    start_session = setsid or os.setsid
    if os.getsid(0) != os.getpid():
        try:
            start_session()
        except OSError as exc:
            refused.append(f"a session of its own: {exc}")
    if os.getsid(0) != os.getpid():  # still in the parent's session: its autogroup is everyone's there
        refused.append(f"autogroup nice {LOWEST_AUTOGROUP_NICE}: not in a session of its own")
    elif autogroup.exists():
        problem = _set_autogroup_nice(autogroup, sleep)
        if problem:
            refused.append(f"autogroup nice {LOWEST_AUTOGROUP_NICE}: {problem}")
    if hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except OSError as exc:
            refused.append(f"the idle scheduling class: {exc}")
    else:
        refused.append("the idle scheduling class: not on this platform")
    return refused


def _set_autogroup_nice(autogroup: Path, sleep: Callable[[float], None]) -> str | None:
    """``None`` once the autogroup has nice 19, else why not (EAGAIN is retried a few times first)."""
    attempt = 1
    while True:
        try:
            autogroup.write_text(f"{LOWEST_AUTOGROUP_NICE}\n")
            return None
        except OSError as exc:
            if exc.errno != errno.EAGAIN or attempt == _AUTOGROUP_TRIES:
                return str(exc)
        sleep(_AUTOGROUP_RETRY_S)
        attempt += 1


__all__ = ["yield_cpu"]
