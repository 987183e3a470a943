"""What each engine stage does during a `bench features` run, read from outside the stages: the CPU of its worker
processes (``/proc/<pid>/stat``, user + system), which of its workers hold partitions (the broker's description of
the stage's consumer group) and how far its group's commits are behind its inputs (0: everything consumed, applied,
its outputs flushed).

The stage processes are found as this process's ``multiprocessing`` children named ``engine-<stage>-<worker>`` (see
``streams/engine/app.py: run_processes``), and a stage's consumer group by ``engine_group``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from slipstream.bench.exceptions import BenchConfigError
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.transport.connection import KafkaLike, kafka_config
from slipstream.streams.engine.app import EngineJob
from slipstream.streams.engine.runner import engine_group
from slipstream.streams.engine.topology import topology_for

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def check_workers(contracts: Contracts, feature_set: str, workers: tuple[int, ...]) -> None:
    """Each stage's workers share its input partitions: more workers than the fewest partitions would idle.
    ``contracts``: the deployment's, the engine's topics included (``Slipstream.contracts``)."""
    stages = topology_for(feature_set).stages
    limit = min(contracts.spec(t).partitions for stage in stages for t in stage.inputs)
    if not workers or any(not 1 <= n <= limit for n in workers):
        msg = f"workers per stage must be 1..{limit} (the fewest partitions of a stage's inputs), got {workers}"
        raise BenchConfigError(msg)


@dataclass(frozen=True, slots=True)
class Membership:
    members: int  # in the group
    holding: int  # members with at least one partition assigned
    partitions: int  # assigned, over all members


class StageProbe:
    """The stages of one ``EngineJob`` run by ``run_processes`` in this process."""

    def __init__(self, bootstrap_servers: KafkaLike, contracts: Contracts, job: EngineJob) -> None:
        topology = topology_for(job.feature_set)
        self.stages = job.stage_names()
        self._groups = {s: engine_group(job.prefix, topology.feature_set.name, s) for s in self.stages}
        self._inputs = {s: [contracts.topic(t) for t in topology.stage(s).inputs] for s in self.stages}
        self._admin = AdminClient(kafka_config(bootstrap_servers))
        self._reader = Consumer({**kafka_config(bootstrap_servers), "group.id": "bench-stage-probe"})
        self._seen: dict[int, tuple[str, float]] = {}  # pid -> (stage, CPU seconds when last read)

    def close(self) -> None:
        self._reader.close()

    def pids(self) -> dict[str, list[int]]:
        """Each stage's live worker processes."""
        out: dict[str, list[int]] = {s: [] for s in self.stages}
        for child in mp.active_children():
            stage = child.name.removeprefix("engine-").rsplit("-", 1)[0]
            if child.name.startswith("engine-") and stage in out and child.pid is not None:
                out[stage].append(child.pid)
        return out

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far, summed over each stage's workers (one that exited counts as last seen)."""
        for stage, pids in self.pids().items():
            for pid in pids:
                try:
                    self._seen[pid] = (stage, cpu_seconds(pid))
                except OSError:  # exited meanwhile
                    continue
        out = dict.fromkeys(self.stages, 0.0)
        for stage, seconds in self._seen.values():
            out[stage] += seconds
        return out

    def membership(self) -> dict[str, Membership]:
        futures = self._admin.describe_consumer_groups(list(self._groups.values()), request_timeout=5)
        out: dict[str, Membership] = {}
        for stage, group in self._groups.items():
            try:
                members = futures[group].result(timeout=10).members
            except KafkaException:
                out[stage] = Membership(0, 0, 0)
                continue
            held = [len(m.assignment.topic_partitions) if m.assignment is not None else 0 for m in members]
            out[stage] = Membership(len(members), sum(1 for n in held if n), sum(held))
        return out

    def lag(self) -> dict[str, int]:
        """Records on each stage's inputs not yet committed by its group."""
        out: dict[str, int] = {}
        for stage, group in self._groups.items():
            future = self._admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group]
            committed = {(tp.topic, tp.partition): tp.offset for tp in future.result(timeout=10).topic_partitions}
            behind = 0
            for topic in self._inputs[stage]:
                for partition in self._reader.list_topics(topic, timeout=10).topics[topic].partitions:
                    low, high = self._reader.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
                    behind += high - max(committed.get((topic, partition), low), low)
            out[stage] = behind
        return out


__all__ = ["Membership", "StageProbe", "check_workers", "cpu_seconds"]
