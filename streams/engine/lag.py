"""How far a consumer group is behind its input topics (committed offsets against the partitions' ends), and the
drain that ends a run once its input is consumed: each stage stopped, in topology order, once its group has
committed everything its inputs hold."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from confluent_kafka import Consumer, KafkaException, TopicPartition

from slipstream.schemas.transport.connection import KafkaLike, kafka_config, list_topics
from slipstream.streams.engine.exceptions import LagError

QUIET_CHECKS = 3  # a stage is drained when its group's lag was 0 this many checks in a row
CHECK_S = 0.5


class GroupLag:
    """Reads one group's lag over ``topics`` (every partition): end offset minus committed offset, summed; a
    partition with nothing committed counts whole.

    The committed offsets are read by a consumer of the group that never subscribes (so it never joins the group or
    commits), not by the Admin API: ``AdminClient.list_consumer_group_offsets`` has crashed the process in native
    code when the group coordinator was unavailable (confluent-kafka-python #1982), which a broker restart causes.
    """

    def __init__(
        self, bootstrap_servers: KafkaLike, group: str, topics: Sequence[str], *, timeout_s: float = 10.0
    ) -> None:
        self.group = group
        self._timeout = timeout_s
        self._ends = Consumer({**kafka_config(bootstrap_servers), "group.id": group, "enable.auto.commit": False})
        try:
            metadata = list_topics(self._ends, timeout_s)  # a refused login raises KafkaAccessError at once
            missing = [t for t in topics if t not in metadata.topics or metadata.topics[t].error is not None]
        except KafkaException as exc:
            self._ends.close()
            msg = f"cannot read the partitions of {list(topics)}: {exc}"
            raise LagError(msg) from exc
        except BaseException:
            self._ends.close()
            raise
        if missing:
            self._ends.close()
            msg = f"cannot read the lag of group {group!r}: no topic {missing} yet"
            raise LagError(msg)
        self._partitions = [
            TopicPartition(topic, p) for topic in topics for p in sorted(metadata.topics[topic].partitions)
        ]

    def lag(self) -> int:
        done, end = self.progress()
        return end - done

    def progress(self) -> tuple[int, int]:
        """(records committed, records the inputs hold): the group's progress as the broker knows it, which a
        killed worker's lost reports cannot skew."""
        try:
            committed = {
                (tp.topic, tp.partition): tp.offset
                for tp in self._ends.committed(self._partitions, timeout=self._timeout)
            }
            done = end = 0
            for tp in self._partitions:
                low, high = self._ends.get_watermark_offsets(tp, timeout=self._timeout, cached=False)
                done += max(committed.get((tp.topic, tp.partition), -1), low) - low
                end += high - low
        except KafkaException as exc:
            msg = f"cannot read the lag of group {self.group!r}: {exc}"
            raise LagError(msg) from exc
        return done, end

    def close(self) -> None:
        self._ends.close()


class LagReader(Protocol):
    def progress(self) -> tuple[int, int]: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class DrainStage:
    name: str
    group: str
    topics: tuple[str, ...]  # the stage's input topics, full names


class PipelineDrain:
    """When to stop each stage of a run that ends once its input is consumed ("until idle").

    The first stage is drained once its inputs got no new record for ``idle_s`` and its group has committed all they
    hold; every later stage, once the stage before it was stopped, as soon as its group has committed all its inputs
    hold. Lag 0 must be seen ``quiet_checks`` times in a row, ``check_s`` apart. Stopping in topology order means a
    stage never stops while the stage feeding it can still write, so a slow rebalance upstream (seconds without a
    record downstream) cannot end a run early, as each stage timing its own idleness could.

    A read that fails (a broker restarting, a stage's internal topic not created yet) counts as "not drained" and is
    retried at the next check.
    """

    def __init__(
        self,
        bootstrap_servers: KafkaLike,
        stages: Sequence[DrainStage],
        *,
        idle_s: float,
        check_s: float = CHECK_S,
        quiet_checks: int = QUIET_CHECKS,
        reader: Callable[[DrainStage], LagReader] | None = None,
    ) -> None:
        # short timeouts: a check runs in the supervising loop, which must keep watching the workers
        self._open = reader or (lambda stage: GroupLag(bootstrap_servers, stage.group, stage.topics, timeout_s=2.0))
        self._stages = list(stages)
        self._idle_s, self._check_s, self._quiet_checks = idle_s, check_s, quiet_checks
        self._index = 0
        self._lag: LagReader | None = None
        self._quiet = 0
        self._last_check = float("-inf")
        self._end = -1
        self._end_moved_at = time.monotonic()
        self.behind: int | None = None  # the current stage's lag at the last check (None: not read)

    @property
    def done(self) -> bool:
        return self._index >= len(self._stages)

    @property
    def current(self) -> str | None:
        """The stage being drained."""
        return None if self.done else self._stages[self._index].name

    def due(self, now: float | None = None) -> str | None:
        """The stage to stop now (at most one per call, in topology order), or None."""
        now = time.monotonic() if now is None else now
        if self.done or now - self._last_check < self._check_s:
            return None
        self._last_check = now
        stage = self._stages[self._index]
        try:
            if self._lag is None:
                self._lag = self._open(stage)
            done, end = self._lag.progress()
        except LagError:
            self._quiet, self.behind = 0, None
            return None
        self.behind = end - done
        if end != self._end:
            self._end, self._end_moved_at = end, now
        self._quiet = self._quiet + 1 if done == end else 0
        settled = self._index > 0 or now - self._end_moved_at >= self._idle_s
        if self._quiet < self._quiet_checks or not settled:
            return None
        self._lag.close()
        self._lag, self._quiet, self._end, self.behind = None, 0, -1, None
        self._index += 1
        return stage.name

    def close(self) -> None:
        if self._lag is not None:
            self._lag.close()
            self._lag = None


__all__: Sequence[str] = ("CHECK_S", "QUIET_CHECKS", "DrainStage", "GroupLag", "LagReader", "PipelineDrain")
