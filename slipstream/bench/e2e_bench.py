"""`slipstream bench e2e`: event produced -> prediction on the predictions topic, with the whole pipeline running.

Set-up (see :mod:`slipstream.bench.world`): a few weeks of simulated card traffic through the real engine (which
keeps running, one process per stage), two registered models, the first champion. Then ``slipstream score-stream``
starts in its own process, its consumer group placed at the end of the transactions already loaded, and a reader
process follows ``predictions``.

Per rate: the held-out transactions (and, with ``labels``, their label events in event-time order, unpaced) are
produced open-loop — transaction ``i`` due at ``start + i / rate``, producer ``linger.ms`` 0.5 — first for
``warmup_seconds`` (not measured), then for ``seconds``. Latency of a transaction = the time its prediction was on
``predictions`` minus its *due* time (so a producer that fell behind counts against the pipeline, never for it).
"On the topic" is the broker's own stamp: ``predictions`` is a ``LogAppendTime`` topic, so each record's timestamp is
the wall-clock millisecond the broker appended it (taken as the middle of that millisecond, so the figure is good
to ±0.5 ms). The reader's own receive times (``read_*``: one monotonic clock shared with the producer) are reported
beside it: what a downstream consumer following the topic saw, one more hop. After a drain timeout, a measured
transaction without a prediction is ``lost``; a second prediction of one is a ``duplicate``. ``hops_ms`` splits the
path with the scorer's own stamps (wall clock): produced -> consumed by the scorer, consumed -> scored, scored -> on
the topic, on the topic -> read.
"""

from __future__ import annotations

import gc
import math
import multiprocessing as mp
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from slipstream.bench.exceptions import BenchConfigError, BenchRunError, BenchTimeoutError
from slipstream.bench.loadgen import sleep_until
from slipstream.bench.stats import percentiles
from slipstream.bench.world import World, open_world, stop_child
from slipstream.features.windows import to_micros
from slipstream.schemas.transport.admin import TopicAdmin, members_holding_partitions
from slipstream.schemas.transport.connection import KafkaLike, kafka_config
from slipstream.streams.publish import frame_records

Say = Callable[[str], None]
EVENTS_PER_DAY = 9_000  # the simulator's default 5,000 customers make ~9,600 transactions a day


@dataclass(frozen=True, slots=True)
class E2EBenchConfig:
    rates: tuple[float, ...] = (1_000.0, 5_000.0)
    seconds: float = 25.0
    warmup_seconds: float = 5.0
    drain_s: float = 10.0
    load_days: int = 21
    labels: bool = True
    linger_ms: float = 0.5
    keep: bool = False
    scorers: int = 1  # score-stream worker processes, sharing the transactions' partitions

    @property
    def heldout_days(self) -> int:
        events = sum(r * (self.seconds + self.warmup_seconds) for r in self.rates) + 1_000
        return math.ceil(events / EVENTS_PER_DAY) + 1


# ---------------------------------------------------------------------------------------------------- pure parts


def e2e_summary(
    due: Mapping[str, float],
    received: Iterable[tuple[str, float]],
    measured: Iterable[str],
) -> dict[str, Any]:
    """Latency (ms, from due time to the first arrival), lost and duplicates of the ``measured`` event ids.

    ``due``: event id -> due time; ``received``: (event id, arrival time, on the same clock) of every prediction,
    in any order.
    """
    wanted = set(measured)
    first: dict[str, float] = {}
    duplicates = 0
    for event_id, at in received:
        if event_id not in wanted:
            continue
        if event_id in first:
            duplicates += 1
            first[event_id] = min(first[event_id], at)
        else:
            first[event_id] = at
    latencies = [(at - due[event_id]) * 1000.0 for event_id, at in first.items()]
    stats = percentiles(latencies)
    return {
        "p50_ms": stats["p50_ms"],
        "p99_ms": stats["p99_ms"],
        "p999_ms": stats["p999_ms"],
        "max_ms": stats.get("max_ms"),
        "sent": len(wanted),
        "received": len(first),
        "lost": len(wanted) - len(first),
        "duplicates": duplicates,
    }


def interleave(tx_times: Sequence[int], label_times: Sequence[int]) -> list[list[int]]:
    """For each transaction, the indices of the labels to send just before it: those not later than it in event
    time (and after the previous transaction's). Labels after the last transaction are not sent."""
    out: list[list[int]] = [[] for _ in tx_times]
    j = 0
    for i, t in enumerate(tx_times):
        while j < len(label_times) and label_times[j] <= t:
            out[i].append(j)
            j += 1
    return out


# ---------------------------------------------------------------------------------------------------- reader


Poll = tuple[float, int, list[tuple[bytes, int]]]  # a poll's monotonic and wall (µs) times; (value, broker ms) each


def _reader(bootstrap: KafkaLike, topic: str, ready: Any, stop: Any, pipe: Any) -> None:
    """Follow ``topic`` from its end; stamp each poll with the monotonic and wall clocks and keep each record's
    timestamp (the broker's append time: :func:`check_append_time`); decode after ``stop``."""
    consumer = Consumer(
        {
            **kafka_config(bootstrap),
            "group.id": "bench-e2e-reader",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 5,
            "fetch.error.backoff.ms": 5,
        }
    )
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    assignment = []
    for p in parts:
        _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        assignment.append(TopicPartition(topic, p, high))
    consumer.assign(assignment)
    gc.disable()
    got: list[Poll] = []
    ready.set()
    while not stop.is_set():
        first = consumer.poll(0.05)
        if first is None:
            continue
        now, wall = time.perf_counter(), time.time_ns() // 1000
        batch = [first, *consumer.consume(1000, 0)]
        got.append((now, wall, [(m.value() or b"", m.timestamp()[1]) for m in batch if m.error() is None]))
    consumer.close()
    pipe.send(got)
    pipe.close()


class PredictionReader:
    """A process reading ``predictions`` (its own process: decoding must not steal the producer's GIL)."""

    def __init__(self, bootstrap: KafkaLike, topic: str) -> None:
        ctx = mp.get_context("spawn")
        self._ready, self._stop = ctx.Event(), ctx.Event()
        self._pipe, child = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(
            target=_reader, args=(bootstrap, topic, self._ready, self._stop, child), name="bench-reader", daemon=True
        )
        self._proc.start()
        child.close()
        if not self._ready.wait(60):
            msg = "the predictions reader did not start within 60 s"
            raise BenchTimeoutError(msg)

    def stop(self) -> list[Poll]:
        self._stop.set()
        got: list[Poll] = self._pipe.recv()
        self._proc.join(10)
        return got


# ---------------------------------------------------------------------------------------------------- the run


def check_append_time(admin: TopicAdmin, topic: str) -> None:
    """Refuse to measure against a ``predictions`` topic whose records carry their producer's time, not the
    broker's (a topic made before it was declared ``LogAppendTime``): the figures would mean something else."""
    kind = admin.configs(topic).get("message.timestamp.type")
    if kind != "LogAppendTime":
        msg = f"{topic!r} has message.timestamp.type={kind}, not LogAppendTime: run `slipstream topics apply`"
        raise BenchRunError(msg)


def _skip_loaded(world: World) -> None:
    """Commit score-stream's group at the end of the loaded transactions: it scores only what the benchmark sends."""
    app = world.app
    topic = app.contracts.topic("transactions")
    consumer = Consumer({**kafka_config(app.kafka), "group.id": f"{app.settings.topic_prefix}slipstream-scorer-fraud"})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = [
            TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
            for p in parts
        ]
        consumer.commit(offsets=ends, asynchronous=False)
    finally:
        consumer.close()


class ScoreStream:
    """``slipstream score-stream`` workers (one process each, one consumer group) joined to the run."""

    def __init__(self, world: World, say: Say, workers: int = 1) -> None:
        topic = world.contracts.topic("transactions")
        partitions = world.contracts.spec("transactions").partitions
        if not 1 <= workers <= partitions:
            msg = f"--scorers must be within 1..{partitions} (the partitions of {topic!r}), got {workers}"
            raise BenchConfigError(msg)
        self.group = f"{world.app.settings.topic_prefix}slipstream-scorer-fraud"
        self.bootstrap = world.app.kafka
        self.workers = workers
        base = world.feast.repo_dir.parent.with_name(f"{world.tag}.score-stream")
        self.log_paths = [base.with_name(f"{base.name}-{i}.log") for i in range(workers)]
        self.log_paths[0].parent.mkdir(parents=True, exist_ok=True)
        say(f"starting {workers} `slipstream score-stream` worker(s) (logs: {base}-*.log)…")
        self._logs: list[IO[bytes]] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        try:
            for path in self.log_paths:
                self._logs.append(path.open("wb"))
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "slipstream", "score-stream", "--quiet", "--log-level", "warning"],
                        env=world.env(),
                        stdout=self._logs[-1],
                        stderr=subprocess.STDOUT,
                    )
                )
        except BaseException:
            self.stop()  # the workers started so far
            raise

    @property
    def log_path(self) -> str:
        return ", ".join(str(p) for p in self.log_paths)

    def check(self) -> None:
        for proc, path in zip(self.procs, self.log_paths, strict=True):
            if proc.poll() is not None:
                msg = f"`slipstream score-stream` exited with code {proc.returncode}; see {path}"
                raise BenchRunError(msg)

    def wait_members(self, timeout_s: float = 120.0) -> None:
        """Until every worker holds partitions of the group (a rebalance must not fall in the measured part)."""
        admin = AdminClient({**kafka_config(self.bootstrap), "log_level": 3})
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check()
            if members_holding_partitions(admin, self.group) == self.workers:
                return
            time.sleep(0.25)
        msg = f"the {self.workers} score-stream workers did not all get partitions of {self.group!r} in {timeout_s:g} s"
        raise BenchTimeoutError(msg)

    def stop(self) -> None:
        for proc, log in zip(self.procs, self._logs, strict=False):  # a log may have no process yet
            stop_child(proc, log)
        for log in self._logs[len(self.procs) :]:
            log.close()


def wall_offset(samples: int = 10) -> float:
    """``time.time() - time.perf_counter()``, from the tightest of a few readings (a preemption between the two
    calls would shift every on-topic latency of the phase)."""
    best_gap, offset = float("inf"), 0.0
    for _ in range(samples):
        before = time.perf_counter()
        wall = time.time()
        after = time.perf_counter()
        if after - before < best_gap:
            best_gap, offset = after - before, wall - (before + after) / 2
    return offset


@dataclass
class Encoded:
    ids: list[str]
    times: list[int]
    keys: list[bytes]
    values: list[bytes]


def _encode(world: World, topic: str, frame: Any, id_field: str, time_field: str) -> Encoded:
    contracts = world.contracts
    serde = contracts.serde(topic)
    records = frame_records(frame)
    return Encoded(
        [str(r[id_field]) for r in records],
        [int(r[time_field]) for r in records],
        [contracts.key(topic, r) for r in records],
        [serde.encode(r) for r in records],
    )


class Pipeline:
    """Produces held-out events in order, open-loop, and remembers when each transaction was due and sent."""

    def __init__(self, world: World, config: E2EBenchConfig) -> None:
        cols = ["transaction_id", "event_time", "customer_id", "terminal_id", "amount"]
        self.tx = _encode(world, "transactions", world.heldout[cols], "transaction_id", "event_time")
        self.labels = (
            _encode(world, "labels", world.heldout_labels, "transaction_id", "event_time")
            if config.labels
            else Encoded([], [], [], [])
        )
        self.before = interleave(self.tx.times, self.labels.times)
        self.producer = world.app.producer(linger_ms=config.linger_ms, client_id="bench-e2e")
        self.tx_topic = world.contracts.topic("transactions")
        self.labels_topic = world.contracts.topic("labels")
        self.next = 0
        self.labels_sent = 0
        self.due: dict[str, float] = {}  # monotonic (perf_counter) seconds
        self.due_wall: dict[str, float] = {}  # the same instants on the wall clock, seconds
        self.lag_ms: dict[str, float] = {}
        self.sent_wall_us: dict[str, int] = {}

    def send(self, i: int) -> str:
        for j in self.before[i]:
            self.producer.send_raw(self.labels_topic, self.labels.keys[j], self.labels.values[j])
            self.labels_sent += 1
        self.producer.send_raw(self.tx_topic, self.tx.keys[i], self.tx.values[i])
        return self.tx.ids[i]

    def run(self, rate: float, seconds: float) -> list[str]:
        """Send the next ``rate * seconds`` transactions open-loop; their ids."""
        n = round(rate * seconds)
        if self.next + n > len(self.tx.ids):
            msg = f"out of held-out transactions: {self.next + n:,} needed, {len(self.tx.ids):,} simulated"
            raise BenchRunError(msg)
        ids = []
        start = time.perf_counter() + 0.01
        to_wall = wall_offset()  # the broker stamps wall-clock time
        clock = time.perf_counter
        for k in range(n):
            due = start + k / rate
            sleep_until(due)
            sent = clock()
            event_id = self.send(self.next)
            self.sent_wall_us[event_id] = time.time_ns() // 1000
            self.due[event_id] = due
            self.due_wall[event_id] = due + to_wall
            self.lag_ms[event_id] = (sent - due) * 1000.0
            ids.append(event_id)
            self.next += 1
        self.producer.flush()
        return ids


@dataclass(frozen=True, slots=True)
class Arrival:
    event_id: str
    read: float  # monotonic seconds, the reader's poll
    stamps: dict[str, int]  # wall µs: received and scored by score-stream, on the topic, read by the reader

    @property
    def on_topic(self) -> float:
        """Wall seconds: the broker's append millisecond, taken at its middle."""
        return self.stamps["on_topic"] / 1e6


def _decode_all(world: World, got: list[Poll]) -> list[Arrival]:
    serde = world.contracts.serde("predictions")
    out = []
    for now, wall, values in got:
        for value, append_ms in values:
            record = serde.decode(value)
            stamps = {
                "read": wall,
                "received": to_micros(record["received_at"]),
                "scored": to_micros(record["scored_at"]),
                "on_topic": append_ms * 1000 + 500,
            }
            out.append(Arrival(str(record["event_id"]), now, stamps))
    return out


def _hops(pipeline: Pipeline, arrivals: list[Arrival], ids: set[str]) -> dict[str, Any]:
    seen: set[str] = set()
    hops: dict[str, list[float]] = {"to_scorer": [], "scoring": [], "to_topic": [], "to_reader": []}
    for arrival in arrivals:
        event_id, st = arrival.event_id, arrival.stamps
        if event_id not in ids or event_id in seen:
            continue
        seen.add(event_id)
        hops["to_scorer"].append((st["received"] - pipeline.sent_wall_us[event_id]) / 1000.0)
        hops["scoring"].append((st["scored"] - st["received"]) / 1000.0)
        hops["to_topic"].append((st["on_topic"] - st["scored"]) / 1000.0)
        hops["to_reader"].append((st["read"] - st["on_topic"]) / 1000.0)
    return {
        k: {"p50": round(float(np.percentile(v, 50)), 3), "p99": round(float(np.percentile(v, 99)), 3)}
        for k, v in hops.items()
        if v
    }


def phase_row(rate: float, pipeline: Pipeline, arrivals: list[Arrival], ids: list[str]) -> dict[str, Any]:
    """One rate's result: latency to the topic (the target's measure), then as read by a follower."""
    row: dict[str, Any] = {"rate": rate}
    row |= e2e_summary(pipeline.due_wall, [(a.event_id, a.on_topic) for a in arrivals], ids)
    read = e2e_summary(pipeline.due, [(a.event_id, a.read) for a in arrivals], ids)
    row |= {f"read_{k}": read[k] for k in ("p50_ms", "p99_ms", "p999_ms", "max_ms")}
    row["producer_lag_p99_ms"] = percentiles([pipeline.lag_ms[i] for i in ids])["p99_ms"]
    row["hops_ms"] = _hops(pipeline, arrivals, set(ids))
    return row


def _wait_ready(world: World, pipeline: Pipeline, stream: ScoreStream, say: Say) -> None:
    """Send single transactions until one comes back scored: score-stream has joined and loaded its model."""
    say("waiting for score-stream to answer…")
    probe = world.app.consumer(["predictions"], from_beginning=False, contracts=world.contracts)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            stream.check()
            event_id = pipeline.send(pipeline.next)
            pipeline.next += 1
            pipeline.producer.flush()
            until = time.monotonic() + 1.0
            while time.monotonic() < until:
                if any(str(e.value["event_id"]) == event_id for e in probe.poll_batch(100, 0.2).events):
                    return
    finally:
        probe.close()
    msg = f"score-stream produced no prediction within 120 s; see {stream.log_path}"
    raise BenchTimeoutError(msg)


def run_e2e_bench(app: Any, config: E2EBenchConfig, say: Say) -> dict[str, Any]:
    world, results = open_world(
        app, "e2e", load_days=config.load_days, heldout_days=config.heldout_days, keep_engine=True, say=say
    )
    results["e2e"] = []
    stream: ScoreStream | None = None
    try:
        check_append_time(world.app.topic_admin(), world.contracts.topic("predictions"))
        _skip_loaded(world)
        say("encoding the held-out events…")
        pipeline = Pipeline(world, config)
        reader = PredictionReader(world.app.kafka, world.contracts.topic("predictions"))
        stream = ScoreStream(world, say, config.scorers)
        stream.wait_members()
        _wait_ready(world, pipeline, stream, say)
        phases = []
        for rate in config.rates:
            say(f"{rate:,.0f} transactions/s: {config.warmup_seconds:g} s warm-up, then {config.seconds:g} s measured…")
            gc.collect()
            gc.disable()
            try:
                pipeline.run(rate, config.warmup_seconds)
                ids = pipeline.run(rate, config.seconds)
            finally:
                gc.enable()
            stream.check()
            world.check_engine()
            phases.append((rate, ids))
            time.sleep(config.drain_s)  # the drain timeout: what has not arrived by then is lost
        arrivals = _decode_all(world, reader.stop())
        for rate, ids in phases:
            row = phase_row(rate, pipeline, arrivals, ids)
            results["e2e"].append(row)
            say(
                f"  {rate:>6,.0f}/s: on the topic p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms "
                f"(read by a follower: p99 {row['read_p99_ms']} ms), lost {row['lost']}"
            )
        results["labels_sent"] = pipeline.labels_sent
        results["engine"] = {
            s: {"consumed": st.consumed, "applied": st.applied} for s, st in world.engine_stats.items()
        }
        results["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
        results["setup"] = world.setup
    finally:
        if stream is not None:
            stream.stop()
        world.stop_engine()
        if not config.keep:
            world.cleanup(say)
    return results


__all__ = ["Arrival", "E2EBenchConfig", "e2e_summary", "interleave", "phase_row", "run_e2e_bench", "wall_offset"]
