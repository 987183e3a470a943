"""Run a feature set's engine workers as processes and disrupt them on schedule: SIGKILL a worker, add one, restart
a Kafka broker. Then stop the stages in topology order, each once its consumer group has committed everything its
inputs hold, so the run ends with every record processed, however the disruptions landed.

Workers are the same stage processes ``features run`` starts (``streams.engine.app``), with static member ids. A
worker dying other than by the plan fails the run, naming it, as ``features run`` would.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_module
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from slipstream.chaos.exceptions import ChaosError
from slipstream.chaos.plan import ChaosPlan, ChaosStep, due
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.transport.connection import kafka_config
from slipstream.streams.engine.app import EngineJob, stage_process
from slipstream.streams.engine.exceptions import LagError
from slipstream.streams.engine.lag import CHECK_S, DrainStage, GroupLag, PipelineDrain
from slipstream.streams.engine.runner import StageStats, engine_group
from slipstream.streams.engine.topology import topology_for

Say = Callable[[str], None]
FINISH_S = 600.0  # a stage still behind this long after the one before it stopped: the run fails
STALL_S = 120.0  # no progress this long before every step fired: the run fails, naming the steps left


class BrokerControl(Protocol):
    """What a chaos run needs of the platform to restart a broker."""

    def stop_broker(self, node_id: int) -> object: ...

    def start_broker(self, node_id: int) -> object: ...


@dataclass
class ChaosReport:
    workers: int
    events: list[dict[str, Any]] = field(default_factory=list)
    stages: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "workers_per_stage": self.workers,
            "events": self.events,
            "stages": self.stages,
            "seconds": self.seconds,
        }


class ChaosRun:
    """One engine run under ``plan``; ``expected`` is how many records the first stage will consume in all (the
    steps fire at fractions of it)."""

    def __init__(
        self,
        job: EngineJob,
        contracts: Contracts,
        plan: ChaosPlan,
        *,
        expected: int,
        brokers: BrokerControl | None = None,
        broker_ids: tuple[int, ...] = (1, 2, 3),
        say: Say = lambda _m: None,
    ) -> None:
        if "broker" in plan.actions and brokers is None:
            msg = "--chaos broker needs a platform Slipstream runs (it restarts one of its brokers)"
            raise ChaosError(msg)
        settings = job.settings if job.settings.worker_id else replace(job.settings, worker_id="chaos")
        self.job = replace(job, settings=settings)
        self.plan = plan
        self.expected = expected
        self._brokers = brokers
        self._broker_ids = broker_ids
        self._say = say
        topology = topology_for(job.feature_set)
        self._stages = [stage.name for stage in topology.stages]
        scoped = contracts.with_topics(topology.topics())
        self._inputs = {stage.name: [scoped.topic(t) for t in stage.inputs] for stage in topology.stages}
        self._groups = {
            stage.name: engine_group(scoped.catalog.prefix, topology.feature_set.name, stage.name)
            for stage in topology.stages
        }
        self._ctx = mp.get_context("spawn")
        self._queue: Any = self._ctx.Queue()
        self._procs: dict[tuple[str, int], Any] = {}
        self._killed: set[tuple[str, int]] = set()
        self._latest: dict[tuple[str, int], StageStats] = {}
        self._started = 0.0
        self._progress = 0.0  # of the first stage, committed over what its inputs hold
        self.report = ChaosReport(job.workers)

    # ---------------------------------------------------------------------------------------------------- workers
    def _start(self, stage: str, worker: int) -> None:
        proc = self._ctx.Process(
            target=stage_process,
            args=(self.job, stage, worker, None, self._queue, os.getpid()),
            name=f"engine-{stage}-{worker}",
        )
        proc.start()
        self._procs[(stage, worker)] = proc

    def _event(self, what: str, **details: Any) -> None:
        at = round(time.monotonic() - self._started, 2)
        self.report.events.append({"t_s": at, "event": what, **details})
        self._say(f"[chaos {at:7.1f}s] {what} " + " ".join(f"{k}={v}" for k, v in details.items()))

    def _drain(self, timeout: float) -> None:
        try:
            stage, worker, stats = self._queue.get(timeout=timeout)
        except queue_module.Empty:
            return
        self._latest[(stage, worker)] = stats
        while True:
            try:
                stage, worker, stats = self._queue.get_nowait()
            except queue_module.Empty:
                return
            self._latest[(stage, worker)] = stats

    def _check_alive(self) -> None:
        dead = {
            f"{s}#{i}": p.exitcode
            for (s, i), p in self._procs.items()
            if (s, i) not in self._killed and p.exitcode not in (None, 0, -signal.SIGTERM)
        }
        if dead:
            msg = f"engine worker(s) died outside the chaos plan: {dead} (exit codes; see their output above)"
            raise ChaosError(msg)

    def _consumed(self, stage: str) -> int:
        return sum(s.consumed for (name, _), s in self._latest.items() if name == stage)

    # ---------------------------------------------------------------------------------------------------- the run
    def run(self) -> ChaosReport:
        self._started = time.monotonic()
        for stage, worker in self.job.members():
            self._start(stage, worker)
        self._event("started", workers=len(self._procs), stages=",".join(self._stages))
        broker: threading.Thread | None = None
        errors: list[BaseException] = []
        fired = 0
        progress, moved_at = -1, time.monotonic()
        first = GroupLag(
            self.job.settings.bootstrap_servers, self._groups[self._stages[0]], self._inputs[self._stages[0]]
        )
        try:
            while fired < len(self.plan.steps):
                self._drain(0.2)
                self._check_alive()
                try:
                    consumed, held = first.progress()  # committed: what a killed worker's lost reports cannot skew
                except LagError:  # a broker restarting: ask again (a real stall still ends the run below)
                    continue
                if consumed != progress:
                    progress, moved_at = consumed, time.monotonic()
                elif time.monotonic() - moved_at > STALL_S:
                    left = ", ".join(step.action for step in self.plan.steps[fired:])
                    msg = (
                        f"the first stage committed nothing for {STALL_S:.0f} s at {consumed:,} of {held:,} "
                        f"records; chaos steps not fired: {left}"
                    )
                    raise ChaosError(msg)
                self._progress = consumed / max(held, 1)
                step = due(self.plan, fired, consumed, max(held, self.expected))
                if step is None:
                    continue
                fired += 1
                if step.action == "broker" and self._brokers is not None:  # checked in __init__
                    broker = threading.Thread(target=self._restart_broker, args=(self._brokers, errors), daemon=True)
                    broker.start()
                else:
                    self._fire(step)
            if broker is not None:
                while broker.is_alive():
                    self._drain(0.2)
                    self._check_alive()
                if errors:
                    raise errors[0]
            self._finish_all()
        finally:
            first.close()
            self._stop_all()
        self.report.seconds = round(time.monotonic() - self._started, 2)
        self.report.stages = {
            stage: {
                "consumed": self._consumed(stage),
                "duplicates": sum(s.duplicates for (n, _), s in self._latest.items() if n == stage),
                "dead_lettered": sum(s.dead_lettered for (n, _), s in self._latest.items() if n == stage),
                "restored_keys": sum(s.restored_keys for (n, _), s in self._latest.items() if n == stage),
            }
            for stage in self._stages
        }
        return self.report

    def _fire(self, step: ChaosStep) -> None:
        progress = f"{self._progress:.0%}"
        if step.action == "kill":
            stage = self._stages[0]
            member = (stage, 0)
            proc = self._procs[member]
            if proc.pid is None or not proc.is_alive():
                msg = f"worker {stage}#0 is not running; nothing to kill"
                raise ChaosError(msg)
            os.kill(proc.pid, signal.SIGKILL)
            self._killed.add(member)
            proc.join(10)
            self._event("killed", worker=f"{stage}#0", pid=proc.pid, signal="SIGKILL", progress=progress)
        else:  # join
            stage = self._stages[-1]
            index = 1 + max(i for (s, i) in self._procs if s == stage)
            self._start(stage, index)
            self._event("joined", worker=f"{stage}#{index}", progress=progress)

    def _restart_broker(self, brokers: BrokerControl, errors: list[BaseException]) -> None:
        try:
            node = self._leader_of_most(brokers)
            progress = f"{self._progress:.0%}"
            self._event("broker stopping", node=node, progress=progress)
            brokers.stop_broker(node)
            self._event("broker stopped", node=node)
            time.sleep(self.plan.broker_down_s)
            brokers.start_broker(node)
            self._event("broker back", node=node)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the run's thread
            errors.append(exc)

    def _leader_of_most(self, brokers: BrokerControl) -> int:
        """The broker leading most partitions of the first stage's inputs (the restart that bites most)."""
        ids = self._broker_ids
        from confluent_kafka.admin import AdminClient

        metadata = AdminClient(kafka_config(self.job.settings.bootstrap_servers)).list_topics(timeout=10)
        counts = dict.fromkeys(ids, 0)
        for topic in self._inputs[self._stages[0]]:
            for partition in metadata.topics[topic].partitions.values():
                if partition.leader in counts:
                    counts[partition.leader] += 1
        return max(sorted(counts), key=lambda node: counts[node])

    def _finish_all(self) -> None:
        """Stop the stages in topology order, each once its group has committed all its inputs hold (see
        PipelineDrain): the stages after it then see no more input from it."""
        stages = [DrainStage(s, self._groups[s], tuple(self._inputs[s])) for s in self._stages]
        drain = PipelineDrain(self.job.settings.bootstrap_servers, stages, idle_s=0.0)
        try:
            deadline = time.monotonic() + FINISH_S
            while not drain.done:
                self._drain(CHECK_S)
                self._check_alive()
                stage = drain.due()
                if stage is not None:
                    self._stop_stage(stage)
                    deadline = time.monotonic() + FINISH_S
                elif time.monotonic() > deadline:
                    msg = (
                        f"stage {drain.current!r} still {drain.behind} records behind after {FINISH_S / 60:.0f} minutes"
                    )
                    raise ChaosError(msg)
        finally:
            drain.close()

    def _stop_stage(self, stage: str) -> None:
        self._event("stage caught up", stage=stage, consumed=self._consumed(stage))
        for (name, _), proc in self._procs.items():
            if name == stage and proc.is_alive():
                proc.terminate()
        for (name, _), proc in self._procs.items():
            if name == stage:
                proc.join(30)
        self._drain(0.1)

    def _stop_all(self) -> None:
        for proc in self._procs.values():
            if proc.is_alive():
                proc.terminate()
        for proc in self._procs.values():
            proc.join(30)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        while True:
            try:
                stage, worker, stats = self._queue.get_nowait()
            except (queue_module.Empty, OSError, ValueError):
                break
            self._latest[(stage, worker)] = stats
