"""`slipstream bench features`: the online engine's throughput and freshness, Feast's per-event push for the same
rows, and the offline engine — measured side by side in one run on the same machine.

- online_events_per_s: the engine (one process per stage worker) is started on empty topics; once every worker of
  every stage holds partitions, a slice of the simulated fraud stream (transactions + labels) is published; rate =
  the events not yet consumed when publishing ends / the time from then until a vector per transaction is on the
  feature log and every stage's group has committed the end of its inputs (before S11 the slice was published
  before the engine started, and the rate ran from its first batch). With ``workers=(1, 2)`` the run is made
  once per count (fresh topics each), ``online_by_workers`` holds each with ``ratio_vs_1_worker``, and the first
  count keeps the historical keys; ``ratio_vs_1_worker`` is against the mean of the 1-worker runs. Per stage
  (``online_stages``): the records it consumed (on a repartition topic its watermark markers too), its view updates,
  ``cpu_us_per_event`` (its workers' CPU from ``/proc``, user + system, from the first batch to done, divided by the
  events of that interval: every fraud event passes every stage) and the workers the broker saw holding its partitions
  at the end.
- freshness: live synthetic transactions at a fixed open-loop rate with event time = now; a prober samples events
  and polls Redis until the customer's row carries that event's time: produced -> readable, in ms.
- feast_push_events_per_s: the same customer rows written with Feast's ``FeatureStore.push`` one event at a time.
- offline_events_per_s: the vectorised offline engine over the full simulated data set.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from confluent_kafka import Consumer, TopicPartition

from slipstream.app import Slipstream
from slipstream.bench.exceptions import BenchRunError
from slipstream.bench.stage_probe import StageProbe, check_workers
from slipstream.bench.stats import percentiles
from slipstream.features.definitions import FRAUD
from slipstream.features.definitions.fraud import CUSTOMER_VIEW
from slipstream.features.feast_layout import decode_timestamp, timestamp_field
from slipstream.features.feast_repo import FeastRepoConfig, apply_repo, push_source_name, view_layouts
from slipstream.features.redis_client import redis_client
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.transport import EventProducer, TopicAdmin
from slipstream.schemas.transport.connection import KafkaLike, kafka_config
from slipstream.streams.engine.app import EngineJob, run_processes
from slipstream.streams.engine.runner import StageStats
from slipstream.streams.publish import frame_records

Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class FeatureBenchConfig:
    data: Path
    labels: Path
    days: float = 14.0
    rate: float = 1000.0
    freshness_seconds: float = 20.0
    push_rows: int = 2000
    parts: tuple[str, ...] = ("online", "faust", "freshness", "push", "offline")
    workers: tuple[int, ...] = (1,)  # per stage; several: one online run each, in this order


def _scoped(app: Slipstream, tag: str) -> Contracts:
    contracts = app.with_prefix(f"bench-{tag}-{uuid.uuid4().hex[:6]}.")
    app.apply_topics(contracts)
    return contracts


def _log_count(bootstrap: KafkaLike, topic: str) -> int:
    consumer = Consumer({**kafka_config(bootstrap), "group.id": "bench-probe"})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts)
    finally:
        consumer.close()


def _slice(config: FeatureBenchConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    tx = pd.read_parquet(config.data, columns=["transaction_id", "event_time", "customer_id", "terminal_id", "amount"])
    labels = pd.read_parquet(config.labels)
    end = tx["event_time"].min() + pd.Timedelta(days=config.days)
    return tx[tx["event_time"] < end], labels[labels["event_time"] < end]


def online_throughput(
    app: Slipstream, config: FeatureBenchConfig, say: Say, workers: int = 1, runtime: str = "kafka"
) -> dict[str, Any]:
    """The whole engine (both stages, exact windows, Redis writes, feature log) on ``runtime``, one process per stage
    worker; the clock runs from the end of publishing until every vector is on the feature log (flushed) and every
    stage's group has committed all its input."""
    tx, labels = _slice(config)
    contracts = _scoped(app, f"{runtime}{workers}")
    project = f"bench_{uuid.uuid4().hex[:6]}"
    apply_repo(app.feast_config(project), [FRAUD])
    settings = replace(app.engine_settings(project=project), runtime=runtime)
    job = EngineJob(settings, contracts.catalog.prefix, "fraud", workers=workers)
    probe = StageProbe(app.kafka, contracts, job)
    stop = threading.Event()
    progress: dict[str, tuple[int, float]] = {}  # stage -> (records consumed, when reported)

    def on_batch(stage: str, stats: StageStats) -> None:
        progress[stage] = (stats.consumed, time.perf_counter())

    say(f"starting the engine ({runtime} runtime, {workers} process(es) per stage) on empty topics…")
    final: list[dict[str, StageStats]] = []
    # No idle exit: a stage whose work is done stays up (and is measured) until the last stage is done.
    runner = threading.Thread(target=lambda: final.append(run_processes(job, stop, on_batch=on_batch)))
    started = time.perf_counter()
    runner.start()
    try:
        # N workers are N workers only once each holds partitions: the first to join would otherwise take the
        # backlog alone (the test broker's initial rebalance delay is 0).
        while not all(m.holding == workers for m in probe.membership().values()):
            if not runner.is_alive() or time.perf_counter() - started > 300:
                msg = f"the engine's {workers} worker(s) per stage did not all hold partitions within 300 s"
                raise BenchRunError(msg)
            time.sleep(0.1)
        joined = time.perf_counter() - started
        say(f"publishing {len(tx):,} transactions and {len(labels):,} labels ({config.days:g} days)…")
        with EventProducer(app.kafka, contracts, linger_ms=20) as producer:
            for record in frame_records(tx):
                producer.send("transactions", record)
            for record in frame_records(labels):
                producer.send("labels", record)
        # Measured from the end of publishing (no producer on the machine) to done: a vector per transaction on the
        # feature log and every stage's group committed to the end of its inputs (a rebalance replays a tail).
        first_stage, published = job.stage_names()[0], time.perf_counter()
        while progress.get(first_stage, (0, 0.0))[1] < published and time.perf_counter() - published < 5:
            time.sleep(0.005)  # the first report after publishing: (events consumed, when) of one moment
        consumed_then, began = progress.get(first_stage, (0, published))
        cpu_then = probe.cpu()
        log_topic = contracts.topic("feature-log")
        deadline = time.monotonic() + 1800
        while runner.is_alive() and time.monotonic() < deadline:
            if _log_count(app.kafka, log_topic) >= len(tx) and not any(probe.lag().values()):
                break
            time.sleep(0.1)
        done = time.perf_counter()
        cpu_end, membership = probe.cpu(), probe.membership()
        log_records = _log_count(app.kafka, log_topic)
    finally:
        stop.set()
        runner.join()
        probe.close()
        TopicAdmin(app.kafka).delete(contracts.catalog.full_names())
    if not final:  # run_processes raised (a worker died): its error and the workers' output are above
        msg = f"the engine ({workers} worker(s) per stage) stopped before the run was done; see its output above"
        raise BenchRunError(msg)
    events = len(tx) + len(labels)
    # Every transaction and label passes every stage of the fraud set (the first stage reads them, each later one
    # gets each forwarded): the events a stage consumed in the measured interval are the run's events then.
    measured = events - consumed_then
    stages: dict[str, dict[str, Any]] = {}
    for stage in job.stage_names():
        got = final[0].get(stage, StageStats())
        cpu = cpu_end.get(stage, 0.0) - cpu_then.get(stage, 0.0)
        stages[stage] = {
            "workers": workers,
            "workers_holding_partitions": membership[stage].holding,  # at the end; all of them at the start
            "partitions": membership[stage].partitions,
            "records_consumed": got.consumed,  # events, and on a repartition topic its watermark markers too
            "view_updates": got.applied,  # (event, view) applications: a label updates no customer view
            "cpu_us_per_event": round(cpu / measured * 1e6, 1) if measured > 0 else None,
        }
    cpu_total = sum(cpu_end.values()) - sum(cpu_then.values())
    return {
        "runtime": runtime,
        "workers": workers,
        "workers_joined_s": round(joined, 2),
        "events": events,
        "measured_events": measured,
        "seconds": round(done - began, 2),
        "online_events_per_s": round(measured / (done - began)),
        "engine_cpu_us_per_event": round(cpu_total / measured * 1e6, 1) if measured > 0 else None,
        "feature_log_extra_records": log_records - len(tx),
        "stages": stages,
    }


def online_scaling(app: Slipstream, config: FeatureBenchConfig, say: Say) -> dict[str, Any]:
    """The online run once per worker count, in this run; the first count's figures keep the historical keys."""
    runs = [online_throughput(app, config, say, n) for n in config.workers]
    rates: dict[int, list[int]] = {}
    for run in runs:
        rates.setdefault(run["workers"], []).append(run["online_events_per_s"])
    mean = {n: sum(r) / len(r) for n, r in rates.items()}
    one = mean.get(1)  # the mean of the 1-worker runs: interleave them (1,2,1,2) on a machine whose load moves
    for run in runs:
        run["ratio_vs_1_worker"] = round(run["online_events_per_s"] / one, 2) if one else None
    first = runs[0]
    return {
        "online_ratio_by_workers": {str(n): round(m / one, 2) for n, m in mean.items()} if one else None,
        "events": first["events"],
        "seconds": first["seconds"],
        "online_events_per_s": first["online_events_per_s"],
        "online_workers": first["workers"],
        "online_stages": first["stages"],
        "online_by_workers": runs,
    }


def faust_runtime(app: Slipstream, config: FeatureBenchConfig, say: Say) -> dict[str, Any]:
    """The same runs as ``online`` and ``freshness`` with the stages hosted by Faust: same processes, same events,
    same producers, same stopping rule."""
    run = online_throughput(app, config, say, 1, runtime="faust")
    out = {
        "faust_events_per_s": run["online_events_per_s"],
        "faust_cpu_us_per_event": run["engine_cpu_us_per_event"],
        "faust_seconds": run["seconds"],
        "faust_stages": run["stages"],
    }
    if "freshness" in config.parts:
        fresh = freshness(app, config, say, runtime="faust")
        out |= {f"faust_{k}": v for k, v in fresh.items() if k.startswith("freshness_") or k.startswith("probes")}
    return out


def freshness(app: Slipstream, config: FeatureBenchConfig, say: Say, runtime: str = "kafka") -> dict[str, Any]:
    contracts = _scoped(app, f"fresh-{runtime}")
    project = f"bench_{uuid.uuid4().hex[:6]}"
    apply_repo(app.feast_config(project), [FRAUD])
    settings = replace(app.engine_settings(project=project), runtime=runtime)
    job = EngineJob(settings, contracts.catalog.prefix, "fraud")
    stop = threading.Event()
    ready = threading.Event()
    worker = threading.Thread(
        target=lambda: run_processes(job, stop, on_batch=lambda _s, st: ready.set() if st.batches else None)
    )
    worker.start()
    client = redis_client(app.redis_url)  # one Redis or a Redis Cluster
    layout = view_layouts([FRAUD], project)[CUSTOMER_VIEW.name]
    ts_field = timestamp_field(CUSTOMER_VIEW.name)
    rng = np.random.default_rng(3)
    producer = EventProducer(app.kafka, contracts, linger_ms=0.5)
    ready.wait(60)
    time.sleep(1.0)
    samples: list[float] = []
    probes: list[tuple[int, int, float]] = []  # (customer, event micros, produced perf time)
    say(f"live traffic at {config.rate:g} events/s for {config.freshness_seconds:g} s, probing Redis…")

    def probe() -> None:
        while not stop.is_set() or probes:
            if not probes:
                time.sleep(0.001)
                continue
            customer, micros, sent = probes[0]
            raw = client.hget(layout.key({"customer_id": customer}), ts_field)
            if raw is not None:
                seen = decode_timestamp(raw)
                if (seen - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) >= micros:
                    samples.append((time.perf_counter() - sent) * 1000)
                    probes.pop(0)
                    continue
            if time.perf_counter() - sent > 5:
                probes.pop(0)  # counted as lost below
                continue
            time.sleep(0.0005)  # 0.5 ms resolution; tighter polling would steal the engine's CPU

    prober = threading.Thread(target=probe)
    prober.start()
    warmup = int(config.rate * 3)  # group join, first fetches, JIT-free but cache-cold paths: not measured
    n = int(config.rate * config.freshness_seconds) + warmup
    start = time.perf_counter()
    for i in range(n):
        if i == warmup:
            while probes:
                time.sleep(0.01)
            samples.clear()
        due = start + i / config.rate
        while (delay := due - time.perf_counter()) > 0:
            time.sleep(min(delay, 0.001))
        customer = int(rng.integers(0, 100_000))
        now = datetime.now(UTC)
        record = {
            "transaction_id": 10_000_000 + i,
            "event_time": now,
            "customer_id": customer,
            "terminal_id": int(rng.integers(0, 10_000)),
            "amount": float(round(rng.gamma(2, 30), 2)),
        }
        producer.send("transactions", record)
        if i % 10 == 0:
            probes.append(
                (customer, (now - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1), time.perf_counter())
            )
    producer.flush()
    stop.set()
    prober.join()
    worker.join()
    TopicAdmin(app.kafka).delete(contracts.catalog.full_names())
    stats = percentiles(samples)
    return {
        "rate": config.rate,
        "freshness_p50_ms": stats["p50_ms"],
        "freshness_p99_ms": stats["p99_ms"],
        "freshness_p999_ms": stats["p999_ms"],
        "probes": stats["n"],
        "probes_lost": (n - warmup) // 10 - stats["n"],
    }


def feast_push(app: Slipstream, config: FeatureBenchConfig, say: Say) -> dict[str, Any]:
    project = f"bench_{uuid.uuid4().hex[:6]}"
    store = apply_repo(app.feast_config(project), [FRAUD])
    rng = np.random.default_rng(5)
    names = CUSTOMER_VIEW.feature_names
    now = pd.Timestamp.now(tz="UTC")
    say(f"Feast push, one event at a time, {config.push_rows:,} rows…")
    started = time.perf_counter()
    for i in range(config.push_rows):
        row = {
            "customer_id": [int(rng.integers(0, 5000))],
            "event_timestamp": [now + pd.Timedelta(seconds=i)],
            "created": [now],
        }
        row.update({name: [float(rng.random())] for name in names})
        store.push(push_source_name(CUSTOMER_VIEW.name), pd.DataFrame(row))
    elapsed = time.perf_counter() - started
    return {"feast_push_rows": config.push_rows, "feast_push_events_per_s": round(config.push_rows / elapsed)}


def offline(config: FeatureBenchConfig, say: Say) -> dict[str, Any]:
    from slipstream.features.offline import compute_offline

    tx = pd.read_parquet(config.data, columns=["transaction_id", "event_time", "customer_id", "terminal_id", "amount"])
    labels = pd.read_parquet(config.labels)
    say(f"offline engine over {len(tx):,} transactions and {len(labels):,} labels…")
    started = time.perf_counter()
    result = compute_offline(FRAUD, {"transactions": tx, "labels": labels})
    elapsed = time.perf_counter() - started
    events = len(tx) + len(labels)
    return {
        "offline_events": events,
        "offline_seconds": round(elapsed, 2),
        "offline_events_per_s": round(events / elapsed),
        "offline_vectors": len(result.vectors),
    }


def run_features_bench(app: Slipstream, config: FeatureBenchConfig, say: Say) -> dict[str, Any]:
    results: dict[str, Any] = {"machine_cores": _cores(), "machine_load_1m": round(_load(), 2)}
    if "online" in config.parts:
        check_workers(app.with_prefix(""), "fraud", config.workers)
        results |= online_scaling(app, config, say)
    if "freshness" in config.parts:
        results |= freshness(app, config, say)
    if "faust" in config.parts:
        results |= faust_runtime(app, config, say)
        if results.get("faust_events_per_s") and "online_events_per_s" in results:
            results["online_ratio_vs_faust"] = round(results["online_events_per_s"] / results["faust_events_per_s"], 2)
        if results.get("faust_cpu_us_per_event") and results.get("online_by_workers"):
            kafka_cpu = results["online_by_workers"][0]["engine_cpu_us_per_event"]
            results["cpu_ratio_kafka_vs_faust"] = round(kafka_cpu / results["faust_cpu_us_per_event"], 2)
    if "push" in config.parts:
        results |= feast_push(app, config, say)
    if "online_events_per_s" in results and "feast_push_events_per_s" in results:
        ratio = results["online_events_per_s"] / results["feast_push_events_per_s"]
        results["write_ratio_vs_feast_push"] = round(ratio, 1)
    if "offline" in config.parts:
        results |= offline(config, say)
    return results


def _cores() -> int:
    import os

    return os.cpu_count() or 0


def _load() -> float:
    """The 1-minute load average when the run starts (other work on the machine skews every figure)."""
    import os

    return os.getloadavg()[0]


__all__ = ["FeatureBenchConfig", "FeastRepoConfig", "run_features_bench"]
