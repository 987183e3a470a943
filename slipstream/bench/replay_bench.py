"""`slipstream bench replay`: record a window of a real production and replay it as fast as it goes.

1. **Production.** The benchmark world (:mod:`slipstream.bench.world`): ``days`` simulated days through the real
   engine, a registered champion. Then ``window_events`` held-out transactions and the labels of that time, in event
   time order, scored by the real Kafka scorer (``score-stream``'s :class:`ScoreStream`, in this process) while the
   engine keeps running. Publishing is gated as a replay's feed gates it (chunks spanning at most half the allowed
   lateness in event time, each scored before the next): the scorer is never further behind the engine than the
   lateness, so every recorded score is exact.
2. **Record** the window with :class:`~slipstream.replay.record.Recorder` (history, outputs, models).
3. **Platforms.** A throwaway platform per ``backends`` entry is started, measured (``platform_start_s``) and
   closed; the first that starts is kept for the replay. One that cannot start is reported with its reason.
4. **Replay** (``--speed max``) into it; the diff must have 0 failing predictions. Measured around it: CPU of this
   process (``time.process_time``: the feed and the scorer) and of the engine's stage processes (``/proc``), from the
   end of the first window chunk to the end of the window, per window record; and where the feed's thread spends the
   window (stack samples every 5 ms: producing, waiting for acks, the scorer's poll / scoring / producing, ...).
5. **Baseline**, same broker, same records: the window's records produced raw to fresh topics and consumed back —
   what a replay can at most reach — and the ratio.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from slipstream.app import Slipstream
from slipstream.bench.exceptions import BenchConfigError, BenchRunError
from slipstream.bench.shadow_bench import cpu_seconds
from slipstream.bench.world import TX_COLUMNS, Say, World, open_world
from slipstream.features.definitions import feature_sets
from slipstream.infra.exceptions import InfraError
from slipstream.infra.throwaway import Throwaway, start_throwaway
from slipstream.monitoring.figures import micros
from slipstream.replay.feed import merged
from slipstream.replay.kafka_io import Reproducer, raw_consumer, raw_producer
from slipstream.replay.record import Recorder, RecordPlan
from slipstream.replay.run import ReplayOptions, ReplayResult, replay_slice
from slipstream.replay.slice_file import SliceReader
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.topics import TopicCatalog
from slipstream.schemas.transport import EventProducer, TopicAdmin
from slipstream.serving.stream import ScoreStream
from slipstream.streams.publish import frame_records

Progress = Callable[[str, int, int | None], None]
TARGET_EVENTS_PER_S = 50_000
BACKENDS = ("testcontainers", "local")
PRODUCTION_CHUNK = 2_000
TX_PER_DAY = 8_000  # fewer than the simulator's ~9.5k a day: enough held-out days for the window


@dataclass(frozen=True)
class ReplayBenchConfig:
    days: int = 21
    window_events: int = 20_000
    backends: tuple[str, ...] = BACKENDS
    lateness_s: float | None = None  # None: the settings' own

    def __post_init__(self) -> None:
        if self.days < 14:  # the world trains on the 14 days before the window
            msg = f"days must be >= 14, got {self.days!r}"
            raise BenchConfigError(msg)
        if self.window_events < 1:
            msg = f"window_events must be >= 1, got {self.window_events!r}"
            raise BenchConfigError(msg)
        if not self.backends or any(b not in BACKENDS for b in self.backends):
            msg = f"backends must be some of {', '.join(BACKENDS)}, got {','.join(self.backends)!r}"
            raise BenchConfigError(msg)
        if self.lateness_s is not None and not self.lateness_s > 0:
            msg = f"lateness_s must be > 0, got {self.lateness_s!r}"
            raise BenchConfigError(msg)


def run_replay_bench(app: Slipstream, config: ReplayBenchConfig, say: Say, progress: Progress) -> dict[str, Any]:
    if config.lateness_s is not None:
        app = Slipstream(app.settings.model_copy(update={"lateness_s": config.lateness_s}))
    heldout = math.ceil(config.window_events / TX_PER_DAY) + 1
    world, results = open_world(app, "replay", load_days=config.days, heldout_days=heldout, keep_engine=True, say=say)
    try:
        with tempfile.TemporaryDirectory(prefix="slipstream-bench-replay-") as tmp:
            results |= {"load_days": config.days, "lateness_s": world.app.settings.lateness_s}
            results["production"] = _produce(world, config.window_events, say)
            started = time.perf_counter()
            path = Path(tmp) / "window.slice"
            manifest = _record(world, results["production"], path, progress)
            results["record_s"] = round(time.perf_counter() - started, 1)
            results["slice_mb"] = round(path.stat().st_size / 1e6, 1)
            world.stop_engine()  # from here on, the only engine processes are the replay's
            platform, results["platforms"] = _platforms(config.backends, say)
            try:
                results |= _replay(world, path, platform, say, progress)
                with SliceReader(path) as reader:
                    results |= _baseline(platform.bootstrap_servers, reader, manifest, say)
            finally:
                platform.close()
    finally:
        world.cleanup(say)
    results["ratio_to_baseline"] = round(results["events_per_s"] / results["baseline_produce_consume_per_s"], 4)
    results["target_events_per_s"] = TARGET_EVENTS_PER_S
    results["target_met"] = results["events_per_s"] >= TARGET_EVENTS_PER_S
    return results


# ---------------------------------------------------------------------------------------------- production
def _window(world: World, n: int) -> list[tuple[str, dict[str, Any]]]:
    """The first ``n`` held-out transactions and the labels published up to the last one, in event-time order."""
    tx = world.heldout.head(n)
    last = tx["event_time"].max()
    labels = world.heldout_labels[world.heldout_labels["event_time"] <= last]
    out = [("transactions", r) for r in frame_records(tx[TX_COLUMNS])]
    out += [("labels", r) for r in frame_records(labels)]
    out.sort(key=lambda item: micros(item[1]["event_time"]))
    return out


def _produce(world: World, n: int, say: Say) -> dict[str, Any]:
    """Publish the window, gated, with the engine running and the Kafka scorer scoring; wait for every score."""
    app, contracts = world.app, world.contracts
    records = _window(world, n)
    n_tx = sum(topic == "transactions" for topic, _ in records)
    span_us = max(int(app.settings.lateness_s * 1e6) // 2, 1)
    service = app.scoring_service(contracts=contracts, remember_recent=True, reco=False)
    producer = app.producer(linger_ms=0.5, contracts=contracts)
    consumer = app.consumer(
        ["transactions"],
        group_id=f"{contracts.catalog.prefix}scorer",
        from_beginning=False,
        dead_letters=producer,
        processor="score-stream",
        contracts=contracts,
    )
    service.start()
    stream = ScoreStream(service, consumer, producer)
    stop = threading.Event()
    while not consumer.assigned.is_set():
        stream.step(stop)
    scorer = threading.Thread(target=stream.run, args=(stop,), name="bench-replay-scorer", daemon=True)
    scorer.start()
    say(f"production: {n_tx:,} transactions and {len(records) - n_tx:,} labels through the engine and the scorer…")
    start = datetime.now(UTC)
    began = time.perf_counter()
    sent = gates = 0
    try:
        with EventProducer(app.kafka, contracts, linger_ms=1) as out:
            lo: int | None = None
            in_chunk = 0
            for topic, record in records:
                if topic == "transactions":
                    t = micros(record["event_time"])
                    lo = t if lo is None else lo
                    if t - lo > span_us or in_chunk >= PRODUCTION_CHUNK:
                        out.flush()
                        _wait_scored(world, stream, sent)
                        gates += 1
                        lo, in_chunk = t, 0
                    in_chunk += 1
                    sent += 1
                out.send(topic, record)
            out.flush()
        _wait_scored(world, stream, sent)
        end = datetime.now(UTC)
    finally:
        stop.set()
        scorer.join(60)
        service.stop()
        consumer.close()
        producer.flush()
    seconds = time.perf_counter() - began
    return {
        "transactions": n_tx,
        "labels": len(records) - n_tx,
        "scored": stream.stats.scored,
        "gates": gates,
        "seconds": round(seconds, 1),
        "from": start.isoformat(),
        "to": end.isoformat(),
    }


def _wait_scored(world: World, stream: ScoreStream, sent: int, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while stream.stats.consumed < sent:
        world.check_engine()
        if time.monotonic() > deadline:
            msg = f"the production scorer consumed {stream.stats.consumed:,} of {sent:,} in {timeout_s:g} s"
            raise BenchRunError(msg)
        time.sleep(0.001)


def _record(world: World, production: dict[str, Any], path: Path, progress: Progress) -> dict[str, Any]:
    recorder = Recorder(
        world.contracts,
        world.app.kafka,
        feature_sets(),
        lateness_s=world.app.settings.lateness_s,
        registry=world.app.model_registry,
        settings_note={"lateness_s": world.app.settings.lateness_s, "fraud_model": world.model},
        progress=progress,
    )
    start, end = datetime.fromisoformat(production["from"]), datetime.fromisoformat(production["to"])
    return recorder.record(RecordPlan(("transactions",), start, end), path)


# ---------------------------------------------------------------------------------------------- platforms
def _platforms(backends: tuple[str, ...], say: Say) -> tuple[Throwaway, dict[str, Any]]:
    """Start each backend's throwaway, note its start time, keep the first that starts (close the others)."""
    notes: dict[str, Any] = {}
    kept: Throwaway | None = None
    for backend in backends:
        say(f"starting a throwaway platform ({backend})…")
        try:
            platform = start_throwaway("testcontainers" if backend == "testcontainers" else "local")
        except InfraError as exc:
            notes[backend] = {"available": False, "why": str(exc).splitlines()[0]}
            continue
        notes[backend] = {"available": True, "platform_start_s": round(platform.start_s, 2)}
        if kept is None:
            kept = platform
            notes[backend]["replayed_here"] = True
        else:
            platform.close()
    if kept is None:
        msg = f"no throwaway platform could be started: {notes}"
        raise BenchRunError(msg)
    return kept, notes


# ---------------------------------------------------------------------------------------------- the replay
class _Cpu:
    """CPU seconds of this process and of the engine's stage processes (its children running ``spawn_main``)."""

    def __init__(self) -> None:
        self._engine: dict[int, bool] = {}

    def _children(self) -> list[int]:
        pids: list[int] = []
        for task in Path("/proc/self/task").iterdir():
            try:
                pids += [int(p) for p in (task / "children").read_text().split()]
            except OSError:
                continue
        return pids

    def engine_s(self) -> float:
        total = 0.0
        for pid in self._children():
            try:
                if pid not in self._engine:
                    self._engine[pid] = b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
                if self._engine[pid]:
                    total += cpu_seconds(pid)
            except OSError:  # exited meanwhile
                continue
        return total

    def snapshot(self) -> tuple[float, float]:
        return time.process_time(), self.engine_s()


#: Innermost frame first: (function, file ending) -> what the feed's thread is doing.
PLACES: tuple[tuple[str, str, str], ...] = (
    ("poll_batch", "transport/consumer.py", "scorer_poll_and_decode"),
    ("score_batch", "", "scorer_features_and_model"),
    ("send", "transport/producer.py", "scorer_produce_predictions"),
    ("handle", "serving/stream.py", "scorer_other"),
    ("commit", "serving/kafka_front.py", "scorer_commit"),
    ("step", "serving/kafka_front.py", "scorer_other"),
    ("send", "replay/kafka_io.py", "feed_produce"),
    ("flush", "replay/kafka_io.py", "feed_flush_wait_acks"),
    ("swap", "replay/pipeline.py", "model_swap"),
    ("drain", "replay/pipeline.py", "gate_other"),
    ("run", "replay/feed.py", "feed_read_slice_and_decode"),
)


class _Sampler:
    """Where one thread spends its time inside ``WindowFeed.run``: its stack, sampled every ``every_s``."""

    def __init__(self, thread_id: int, every_s: float = 0.005) -> None:
        self.thread_id, self.every_s = thread_id, every_s
        self.counts: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-replay-sampler", daemon=True)

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            frame = sys._current_frames().get(self.thread_id)
            stack = []
            while frame is not None:
                stack.append((frame.f_code.co_name, frame.f_code.co_filename))
                frame = frame.f_back
            if not any(name == "run" and file.endswith("replay/feed.py") for name, file in stack):
                continue  # not in the window
            self.counts[_place(stack)] += 1

    def shares(self) -> dict[str, float]:
        total = sum(self.counts.values())
        return {k: round(v / total, 3) for k, v in self.counts.most_common()} if total else {}


def _place(stack: list[tuple[str, str]]) -> str:
    for name, file in stack:  # innermost first
        for function, ending, place in PLACES:
            if name == function and file.endswith(ending):
                return place
    return "other"


def _replay(world: World, path: Path, platform: Throwaway, say: Say, progress: Progress) -> dict[str, Any]:
    cpu = _Cpu()
    marks: dict[str, Any] = {"window": []}

    def observe(task: str, done: int, total: int | None) -> None:
        if task.startswith("window"):
            marks["window"].append((done, cpu.snapshot()))
        elif task.startswith("history: feature engine") and total is not None and done >= total:
            marks["history_end"] = (0, cpu.snapshot())
        progress(task, done, total)

    say(f"replaying the slice on the {platform.backend} platform at full speed…")
    with _Sampler(threading.get_ident()) as sampler:
        options = ReplayOptions(speed=None, offline_check=True)
        result = replay_slice(path, options, world.app.settings, platform=platform, progress=observe)
    return _replay_figures(result, marks, sampler)


def _replay_figures(result: ReplayResult, marks: dict[str, Any], sampler: _Sampler) -> dict[str, Any]:
    summary, timings, counts = result.summary, result.timings, result.counts
    window = marks["window"]
    first = window[0] if len(window) > 1 and window[-1][0] > window[0][0] else marks.get("history_end", window[0])
    (done0, (me0, engine0)), (done1, (me1, engine1)) = first, window[-1]
    events = max(done1 - done0, 1)
    history_s = timings["history_publish_s"] + timings["history_engine_s"]
    return {
        "events_per_s": round(timings["events_per_s"], 1),
        "window_records": counts["window_records"],
        "window_transactions": counts["window_scored_inputs"],
        "window_s": round(timings["window_s"], 2),
        "chunks": counts["chunks"],
        "records_per_chunk": round(counts["window_records"] / max(counts["chunks"], 1), 1),
        "swaps": counts["swaps"],
        "history_records": counts["history_records"],
        "history_records_per_s": round(counts["history_records"] / history_s, 1) if history_s > 0 else 0.0,
        "history_publish_s": round(timings["history_publish_s"], 2),
        "history_engine_s": round(timings["history_engine_s"], 2),
        "cpu_us_per_event_this_process": round((me1 - me0) / events * 1e6, 1),
        "cpu_us_per_event_engine": round((engine1 - engine0) / events * 1e6, 1),
        "cpu_measured_over_records": events,
        "window_time_shares": sampler.shares(),
        "window_time_samples": sum(sampler.counts.values()),
        "diff": {k: v for k, v in result.to_dict()["diff"].items() if k not in ("missing_ids", "extra_ids", "listed")},
        "diff_first_listed": json.loads(json.dumps(result.to_dict()["diff"]["listed"][:2], default=str)),
        "failing": summary.failing,
        # which side equals the offline engine's features (the definition) when the two differ
        "offline_check": result.offline,
    }


# ---------------------------------------------------------------------------------------------- the baseline
def _baseline(bootstrap: str, reader: SliceReader, manifest: dict[str, Any], say: Say) -> dict[str, Any]:
    """The window's records produced raw to fresh topics on the replay's broker, then consumed back."""
    prefix = f"bench-baseline-{uuid.uuid4().hex[:8]}."
    recorded = manifest["topics"]
    base = Contracts.default()
    specs = tuple(
        dataclasses.replace(spec, partitions=int(recorded[spec.name]["partitions"]), retention_ms=-1)
        for spec in base.catalog.specs
        if spec.name in recorded
    )
    contracts = Contracts(TopicCatalog(prefix, specs), base.registry, base.framing)
    admin = TopicAdmin(bootstrap)
    admin.apply(contracts.catalog)
    try:
        records = list(merged(reader, "slice"))
        say(f"baseline: producing and consuming the same {len(records):,} records raw on the same broker…")
        reproducer = Reproducer(raw_producer(bootstrap), contracts.topic)
        started = time.perf_counter()
        for record in records:
            reproducer.send(record)
        reproducer.flush()
        produce_s = time.perf_counter() - started
        consume_s = _consume_all(bootstrap, contracts, len(records))
    finally:
        admin.delete(admin.matching(prefix))
    n = len(records)
    return {
        "baseline_records": n,
        "baseline_produce_per_s": round(n / produce_s, 1),
        "baseline_consume_per_s": round(n / consume_s, 1),
        "baseline_produce_consume_per_s": round(n / (produce_s + consume_s), 1),
    }


def _consume_all(bootstrap: str, contracts: Contracts, expected: int, timeout_s: float = 120.0) -> float:
    consumer = raw_consumer(bootstrap)
    try:
        parts = [
            TopicPartition(contracts.topic(spec.name), p, OFFSET_BEGINNING)
            for spec in contracts.catalog.specs
            for p in range(spec.partitions)
        ]
        consumer.assign(parts)
        got = 0
        started = time.perf_counter()
        for batch in _batches(consumer, started + timeout_s):
            got += sum(1 for m in batch if m.error() is None)
            if got >= expected:
                return time.perf_counter() - started
        msg = f"baseline: consumed {got:,} of {expected:,} records in {timeout_s:g} s"
        raise BenchRunError(msg)
    finally:
        consumer.close()


def _batches(consumer: Any, deadline: float) -> Iterator[list[Any]]:
    while time.perf_counter() < deadline:
        yield consumer.consume(5000, 0.2)
