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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from slipstream.features.base import FeatureSet
from slipstream.schemas.contracts import Contracts
from slipstream.signals import stop_on
from slipstream.streams.engine.background import yield_cpu
from slipstream.streams.engine.exceptions import EngineError
from slipstream.streams.engine.lag import DrainStage, PipelineDrain
from slipstream.streams.engine.runner import EngineSettings, StageRunner, StageStats, engine_group, quiet_gc
from slipstream.streams.engine.topology import topology_for

if TYPE_CHECKING:
    from slipstream.streams.engine.faust_runtime import FaustStageRunner

PR_SET_PDEATHSIG = 1  # linux/prctl.h

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EngineJob:
    settings: EngineSettings
    prefix: str
    feature_set: str | FeatureSet  # a registered set's name, or any set (see features/definitions)
    stages: tuple[str, ...] = ()
    workers: int = 1  # per stage, sharing its partitions through the stage's consumer group

    def __post_init__(self) -> None:
        if self.workers < 1:
            msg = f"workers per stage must be >= 1, got {self.workers}"
            raise EngineError(msg)

    def stage_names(self) -> tuple[str, ...]:
        topology = topology_for(self.feature_set)
        return self.stages or tuple(s.name for s in topology.stages)

    def members(self) -> list[tuple[str, int]]:
        """(stage, worker index) of every worker this job runs."""
        return [(stage, i) for stage in self.stage_names() for i in range(self.workers)]


def _runner(
    job: EngineJob, stage: str, worker: int, contracts: Contracts, on_batch: Callable[[StageStats], None] | None
) -> StageRunner | FaustStageRunner:
    """Worker ``worker`` of ``stage`` on the settings' runtime: with several workers a static member id is made
    unique per worker."""
    topology = topology_for(job.feature_set)
    settings = job.settings
    if job.workers > 1 and settings.worker_id is not None:
        settings = replace(settings, worker_id=f"{settings.worker_id}-{worker}")
    if settings.runtime == "faust":
        from slipstream.streams.engine.faust_runtime import FaustStageRunner

        return FaustStageRunner(settings, contracts, topology, topology.stage(stage), on_batch=on_batch)
    return StageRunner(settings, contracts, topology, topology.stage(stage), on_batch=on_batch)


def _summed(stats: Iterable[StageStats]) -> StageStats:
    """The workers of one stage as one: counts added, the latest batch time kept."""
    out = StageStats()
    for one in stats:
        counts = ("consumed", "applied", "duplicates", "dead_lettered", "vectors", "rows_written", "rows_stale")
        for name in (*counts, "evicted", "rows_rejected"):
            setattr(out, name, getattr(out, name) + getattr(one, name))
        out.batches += one.batches
        out.restored_keys += one.restored_keys
        out.last_batch_at = max(out.last_batch_at, one.last_batch_at)
    return out


class _PerStage:
    """Each worker's latest stats; reports and results per stage, its workers summed."""

    def __init__(self, on_batch: Callable[[str, StageStats], None] | None) -> None:
        self._latest: dict[tuple[str, int], StageStats] = {}
        self._on_batch = on_batch
        self._lock = threading.Lock()

    def update(self, stage: str, worker: int, stats: StageStats) -> None:
        with self._lock:
            self._latest[(stage, worker)] = stats
            summed = self._stage(stage)
        if self._on_batch is not None:
            self._on_batch(stage, summed)

    def _stage(self, stage: str) -> StageStats:
        return _summed(s for (name, _), s in self._latest.items() if name == stage)

    def result(self) -> dict[str, StageStats]:
        with self._lock:
            return {stage: self._stage(stage) for stage in dict.fromkeys(name for name, _ in self._latest)}


def stage_groups(job: EngineJob, contracts: Contracts) -> list[DrainStage]:
    """Each stage ``job`` runs, in topology order: its consumer group and its input topics (full names)."""
    topology = topology_for(job.feature_set)
    scoped = contracts.with_topics(topology.topics())
    return [
        DrainStage(
            name,
            engine_group(scoped.catalog.prefix, topology.feature_set.name, name),
            tuple(scoped.topic(t) for t in topology.stage(name).inputs),
        )
        for name in job.stage_names()
    ]


def drain_for(job: EngineJob, contracts: Contracts, idle_s: float) -> PipelineDrain:
    """The drain that ends ``job`` once its input is consumed: its stages in topology order (see PipelineDrain)."""
    return PipelineDrain(job.settings.bootstrap_servers, stage_groups(job, contracts), idle_s=idle_s)


def run_threads(
    job: EngineJob,
    stop: threading.Event,
    *,
    until_idle_s: float | None = None,
    on_batch: Callable[[str, StageStats], None] | None = None,
) -> dict[str, StageStats]:
    """Every stage in a thread; returns when ``stop`` is set, or, with ``until_idle_s``, once the input got nothing
    new for that long and every stage, in topology order, has committed everything its inputs hold."""
    contracts = Contracts.default(job.prefix, job.settings.schema_registry_url)
    per_stage = _PerStage(on_batch)
    errors: list[BaseException] = []
    stops = {stage: threading.Event() for stage in job.stage_names()}

    def work(stage: str, worker: int) -> None:
        try:
            runner = _runner(job, stage, worker, contracts, lambda s: per_stage.update(stage, worker, s))
            per_stage.update(stage, worker, runner.run(stops[stage]))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread below
            errors.append(exc)
            stop.set()

    threads = [
        threading.Thread(target=work, args=(s, i), name=f"engine-{s}-{i}", daemon=True) for s, i in job.members()
    ]
    for thread in threads:
        thread.start()
    drain = drain_for(job, contracts, until_idle_s) if until_idle_s is not None else None
    try:
        while any(t.is_alive() for t in threads):
            if stop.wait(0.1):
                for event in stops.values():
                    event.set()
            elif drain is not None and (stage := drain.due()) is not None:
                stops[stage].set()
    finally:
        for event in stops.values():
            event.set()
        for thread in threads:
            thread.join()
        if drain is not None:
            drain.close()
    if errors:
        raise errors[0]
    return per_stage.result()


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


def stage_process(job: EngineJob, stage: str, worker: int, until_idle_s: float | None, queue: Any, parent: int) -> None:
    stop = threading.Event()
    stop_on(stop)
    _die_with_parent(parent)
    # Co-located with a scorer: give it the CPU (see streams/engine/background.py and Settings.engine_nice).
    for refusal in yield_cpu(nice=job.settings.nice, idle_class=job.settings.idle_class):
        log.warning("engine stage %s could not yield the CPU by %s", stage, refusal)
    contracts = Contracts.default(job.prefix, job.settings.schema_registry_url)

    def report(stats: StageStats) -> None:
        queue.put((stage, worker, stats))

    runner = _runner(job, stage, worker, contracts, report)
    if isinstance(runner, StageRunner):
        quiet_gc()  # this process hosts the stage alone
    stats = runner.run(stop, until_idle_s=until_idle_s)
    queue.put((stage, worker, stats))


def run_processes(
    job: EngineJob,
    stop: threading.Event,
    *,
    until_idle_s: float | None = None,
    on_batch: Callable[[str, StageStats], None] | None = None,
) -> dict[str, StageStats]:
    """One OS process per stage worker (the GIL would otherwise serialise them). A worker that dies stops the run:
    the others are stopped and the error names the worker, never a half pipeline left running. With
    ``until_idle_s``, the run ends once the input got nothing new for that long and every stage, in topology order,
    has committed everything its inputs hold (see PipelineDrain)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = {
        (s, i): ctx.Process(target=stage_process, args=(job, s, i, None, queue, os.getpid()), name=f"engine-{s}-{i}")
        for s, i in job.members()
    }
    for proc in procs.values():
        proc.start()
    per_stage = _PerStage(on_batch)
    died: list[str] = []
    drain = None
    if until_idle_s is not None:
        drain = drain_for(job, Contracts.default(job.prefix, job.settings.schema_registry_url), until_idle_s)
    try:
        while any(p.is_alive() for p in procs.values()):
            dead = [f"{s}#{i}" for (s, i), p in procs.items() if p.exitcode not in (None, 0, -signal.SIGTERM)]
            if dead and not died:
                died.extend(dead)
                stop.set()
            if stop.is_set():
                for proc in procs.values():
                    if proc.is_alive() and proc.pid is not None:
                        proc.terminate()
            elif drain is not None and (drained := drain.due()) is not None:
                for (s, _), proc in procs.items():
                    if s == drained and proc.is_alive():
                        proc.terminate()
            try:
                stage, worker, stats = queue.get(timeout=0.2)
            except queue_module.Empty:
                continue
            per_stage.update(stage, worker, stats)
    finally:  # on the way out, normal or not: stages run in sessions of their own, so no Ctrl-C reaches them
        if drain is not None:
            drain.close()
        for proc in procs.values():
            if proc.is_alive():
                proc.terminate()
        for proc in procs.values():
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
    while not queue.empty():
        stage, worker, stats = queue.get()
        per_stage.update(stage, worker, stats)
    failed = died or [f"{s}#{i}" for (s, i), p in procs.items() if p.exitcode not in (0, -signal.SIGTERM)]
    if failed:
        codes = {f"{s}#{i}": p.exitcode for (s, i), p in procs.items()}
        msg = f"engine worker(s) {failed} exited with an error (exit codes {codes}; see their output above)"
        raise EngineError(msg)
    return per_stage.result()


def stage_list(value: str | None) -> tuple[str, ...]:
    return tuple(s.strip() for s in value.split(",") if s.strip()) if value else ()


__all__: Sequence[str] = (
    "EngineJob",
    "drain_for",
    "run_processes",
    "run_threads",
    "stage_groups",
    "stage_list",
    "stage_process",
)
