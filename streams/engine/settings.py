"""A stage's settings and its progress reports: what the composition root hands a stage, and what it says back."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from slipstream.schemas.transport.connection import KafkaLike
from slipstream.streams.engine.exceptions import EngineError

COLOCATED_NICE = 10  # an engine beside a scorer yields the CPU to it: serving is latency-bound, the engine is not


RUNTIMES = ("kafka", "faust")


@dataclass(frozen=True, slots=True)
class EngineSettings:
    bootstrap_servers: KafkaLike  # the composition root's KafkaConnection (security included); a str is PLAINTEXT
    redis_url: str = field(repr=False)  # may carry a password
    project: str = "slipstream"
    lateness_s: float = 2.0
    batch_size: int = 2000
    poll_timeout_s: float = 0.05
    idle_check_s: float = 0.25
    marker_interval_s: float = 0.01
    commit_interval_s: float = 0.2
    linger_ms: float = 1.0  # the repartition hop and its markers: the next stage's features wait for them
    # Changelogs and feature-log are on no one's latency path (restore, training, audit): batching them spares the
    # broker one produce request per event, which at 1k events/s was most of its CPU.
    bulk_linger_ms: float = 20.0
    # The broker answers a fetch once it holds fetch_min_bytes or after fetch_wait_max_ms: the stages read in
    # batches of up to 2 ms rather than one request per event, which costs the broker a request per event (and
    # per consumer) — the scorer, on the latency path, keeps reading each event as it lands.
    fetch_min_bytes: int = 64 * 1024
    fetch_wait_max_ms: int = 2
    # Static group membership: a worker restarted under the same id takes its partitions back at once, without a
    # rebalance. Each worker of a stage needs its own id; None (the default) joins as a dynamic member.
    worker_id: str | None = None
    nice: int = 0  # added to each stage process's nice value (process mode; threads share their process's)
    # Linux's SCHED_IDLE class for the stage processes (process mode): a waking scorer or broker preempts them at
    # once, where nice 10 still took its share (CFS weight 3 against 1,024, not zero). On a saturated machine the
    # engine falls behind; score-stream stays exact while the lag is under its recent-events horizon
    # (serving/recent.py), and the engine catches up when the load drops.
    idle_class: bool = False
    session_timeout_ms: int = 10_000
    # Progress reports (``on_batch``) at most this often: in process mode each one is a message to the parent, and
    # one per batch (~500 a second per stage at 1k events/s) woke the parent as often and cost the stage ~10 % CPU.
    report_interval_s: float = 0.1
    # The composition root's wire format: the Confluent framing when a schema registry is configured (every stage
    # process builds its contracts from this, as every other processor gets them from the root).
    schema_registry_url: str | None = None
    # A restore reads the changelog for at most this long per step, between polls of the group (see restore.py).
    restore_slice_s: float = 0.2
    # What hosts the stages: "kafka" (confluent-kafka's consumer group, runner.py) or "faust" (a Faust app per
    # stage worker, faust_runtime.py). Both run the same protocol (stage_io.py) and pass the same contract tests.
    runtime: str = "kafka"

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            msg = f"engine runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}"
            raise EngineError(msg)


@dataclass(slots=True)
class StageStats:
    consumed: int = 0
    applied: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    vectors: int = 0
    rows_written: int = 0
    rows_stale: int = 0
    batches: int = 0
    restored_keys: int = 0
    evicted: int = 0
    rows_rejected: int = 0
    last_batch_at: float = field(default_factory=time.monotonic)


class ReportGate:
    """When to hand progress to ``on_batch``: an urgent report at once, otherwise at most every ``interval_s``; a
    change not reported yet goes out on a later call, even one with no change of its own (an idle step)."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last = -float("inf")
        self._pending = False

    @property
    def pending(self) -> bool:
        """A change was held back and has not been reported yet."""
        return self._pending

    def due(self, now: float, *, changed: bool, urgent: bool = False) -> bool:
        self._pending = self._pending or changed or urgent
        if not self._pending or not (urgent or now - self._last >= self.interval_s):
            return False
        self._pending = False
        self._last = now
        return True


__all__ = ["COLOCATED_NICE", "RUNTIMES", "EngineSettings", "ReportGate", "StageStats"]
