"""Run a feature set's stages: in threads of this process (tests, small loads) or one process per stage (uses
every core; stages scale further by starting more workers, which share partitions through their consumer groups)."""

from __future__ import annotations

import ctypes
import logging
import multiprocessing as mp
import os
import queue as queue_module
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from slipstream.features.base import FeatureSet
from slipstream.schemas.contracts import Contracts
from slipstream.streams.engine.background import yield_cpu
from slipstream.streams.engine.exceptions import EngineError
from slipstream.streams.engine.runner import EngineSettings, StageRunner, StageStats
from slipstream.streams.engine.topology import topology_for

PR_SET_PDEATHSIG = 1  # linux/prctl.h

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EngineJob:
    settings: EngineSettings
    prefix: str
    feature_set: str | FeatureSet  # a registered set's name, or any set (see features/definitions)
    stages: tuple[str, ...] = ()

    def stage_names(self) -> tuple[str, ...]:
        topology = topology_for(self.feature_set)
        return self.stages or tuple(s.name for s in topology.stages)


def _runner(
    job: EngineJob, stage: str, contracts: Contracts, on_batch: Callable[[StageStats], None] | None
) -> StageRunner:
    topology = topology_for(job.feature_set)
    return StageRunner(job.settings, contracts, topology, topology.stage(stage), on_batch=on_batch)


def run_threads(
    job: EngineJob,
    stop: threading.Event,
    *,
    until_idle_s: float | None = None,
    on_batch: Callable[[str, StageStats], None] | None = None,
) -> dict[str, StageStats]:
    """Every stage in a thread; returns when ``stop`` is set, or when all stages were idle ``until_idle_s``."""
    contracts = Contracts.default(job.prefix)
    results: dict[str, StageStats] = {}
    errors: list[BaseException] = []

    def work(stage: str) -> None:
        try:
            runner = _runner(job, stage, contracts, (lambda s: on_batch(stage, s)) if on_batch else None)
            results[stage] = runner.run(stop, until_idle_s=until_idle_s)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread below
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=work, args=(s,), name=f"engine-{s}", daemon=True) for s in job.stage_names()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def _die_with_parent(parent: int) -> None:
    """Ask Linux to send SIGTERM when the parent dies (a killed ``features run`` must not leave stages running)."""
    if sys.platform != "linux":
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _stage_process(job: EngineJob, stage: str, until_idle_s: float | None, queue: Any, parent: int) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    _die_with_parent(parent)
    # Co-located with a scorer: give it the CPU (see streams/engine/background.py and Settings.engine_nice).
    for refusal in yield_cpu(nice=job.settings.nice, idle_class=job.settings.idle_class):
        log.warning("engine stage %s could not yield the CPU by %s", stage, refusal)
    contracts = Contracts.default(job.prefix)

    def report(stats: StageStats) -> None:
        queue.put((stage, stats))

    stats = _runner(job, stage, contracts, report).run(stop, until_idle_s=until_idle_s)
    queue.put((stage, stats))


def run_processes(
    job: EngineJob,
    stop: threading.Event,
    *,
    until_idle_s: float | None = None,
    on_batch: Callable[[str, StageStats], None] | None = None,
) -> dict[str, StageStats]:
    """One OS process per stage (the GIL would otherwise serialise them)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = {
        s: ctx.Process(target=_stage_process, args=(job, s, until_idle_s, queue, os.getpid()), name=f"engine-{s}")
        for s in job.stage_names()
    }
    for proc in procs.values():
        proc.start()
    latest: dict[str, StageStats] = {}
    try:
        while any(p.is_alive() for p in procs.values()):
            if stop.is_set():
                for proc in procs.values():
                    if proc.is_alive() and proc.pid is not None:
                        proc.terminate()
            try:
                stage, stats = queue.get(timeout=0.2)
            except queue_module.Empty:
                continue
            latest[stage] = stats
            if on_batch is not None:
                on_batch(stage, stats)
    finally:  # on the way out, normal or not: stages run in sessions of their own, so no Ctrl-C reaches them
        for proc in procs.values():
            if proc.is_alive():
                proc.terminate()
        for proc in procs.values():
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
    while not queue.empty():
        stage, stats = queue.get()
        latest[stage] = stats
    failed = [s for s, p in procs.items() if p.exitcode not in (0, -signal.SIGTERM)]
    if failed:
        msg = f"engine stage(s) {failed} exited with an error (see their output above)"
        raise EngineError(msg)
    return latest


def stage_list(value: str | None) -> tuple[str, ...]:
    return tuple(s.strip() for s in value.split(",") if s.strip()) if value else ()


__all__: Sequence[str] = ("EngineJob", "run_processes", "run_threads", "stage_list")
