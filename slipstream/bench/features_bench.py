"""`slipstream bench features`: the online engine's throughput and freshness, Feast's per-event push for the same
rows, and the offline engine — measured side by side in one run on the same machine.

- online_events_per_s: a slice of the simulated fraud stream (transactions + labels) is published first, then the
  engine (one process per stage) consumes it; rate = events / (first batch -> last vector on the feature log).
- freshness: live synthetic transactions at a fixed open-loop rate with event time = now; a prober samples events
  and polls Redis until the customer's row carries that event's time: produced -> readable, in ms.
- feast_push_events_per_s: the same customer rows written with Feast's ``FeatureStore.push`` one event at a time.
- offline_events_per_s: the vectorised offline engine over the full simulated data set.
"""

from __future__ import annotations

import importlib.util
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from confluent_kafka import Consumer, TopicPartition

from slipstream.app import Slipstream
from slipstream.bench.exceptions import BenchConfigError
from slipstream.bench.stats import percentiles
from slipstream.features.definitions import FRAUD
from slipstream.features.definitions.fraud import CUSTOMER_VIEW
from slipstream.features.feast_layout import decode_timestamp, timestamp_field
from slipstream.features.feast_repo import FeastRepoConfig, apply_repo, push_source_name, view_layouts
from slipstream.features.redis_client import redis_client
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.transport import EventProducer, TopicAdmin
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
    faust_events: int = 50_000


def _scoped(app: Slipstream, tag: str) -> Contracts:
    contracts = app.with_prefix(f"bench-{tag}-{uuid.uuid4().hex[:6]}.")
    app.apply_topics(contracts)
    return contracts


def _log_count(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-probe"})
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


def online_throughput(app: Slipstream, config: FeatureBenchConfig, say: Say) -> dict[str, Any]:
    tx, labels = _slice(config)
    contracts = _scoped(app, "online")
    say(f"publishing {len(tx):,} transactions and {len(labels):,} labels ({config.days:g} days)…")
    with EventProducer(app.bootstrap_servers, contracts, linger_ms=20) as producer:
        for record in frame_records(tx):
            producer.send("transactions", record)
        for record in frame_records(labels):
            producer.send("labels", record)
    project = f"bench_{uuid.uuid4().hex[:6]}"
    apply_repo(app.feast_config(project), [FRAUD])
    job = EngineJob(app.engine_settings(project=project), contracts.catalog.prefix, "fraud")
    stop = threading.Event()
    first_batch: list[float] = []

    def on_batch(_stage: str, stats: StageStats) -> None:
        if not first_batch and stats.consumed:
            first_batch.append(time.perf_counter())

    say("running the engine (one process per stage)…")
    worker = threading.Thread(target=lambda: run_processes(job, stop, until_idle_s=3.0, on_batch=on_batch))
    worker.start()
    log_topic = contracts.topic("feature-log")
    deadline = time.monotonic() + 1800
    while _log_count(app.bootstrap_servers, log_topic) < len(tx) and time.monotonic() < deadline:
        time.sleep(0.1)
    done = time.perf_counter()
    stop.set()
    worker.join()
    elapsed = done - first_batch[0] if first_batch else float("nan")
    events = len(tx) + len(labels)
    TopicAdmin(app.bootstrap_servers).delete(contracts.catalog.full_names())
    return {"events": events, "seconds": round(elapsed, 2), "online_events_per_s": round(events / elapsed)}


def faust_baseline(app: Slipstream, config: FeatureBenchConfig, say: Say) -> dict[str, Any]:
    """Faust consuming the same transactions with the least per-event work (decode + Table update)."""
    import subprocess
    import sys

    from slipstream.bench.faust_baseline import N_REPORT

    tx, _labels = _slice(config)
    tx = tx.head(config.faust_events)
    contracts = _scoped(app, "faust")
    # aiokafka (under Faust) reads no lz4 without an extra package: publish uncompressed for it.
    with EventProducer(app.bootstrap_servers, contracts, linger_ms=20, config={"compression.type": "none"}) as producer:
        for record in frame_records(tx):
            producer.send("transactions", record)
    say(f"Faust baseline: agent + changelog Table over {len(tx):,} transactions…")
    done = subprocess.run(  # noqa: S603 - our own module, our own arguments
        [
            sys.executable,
            "-m",
            "slipstream.bench.faust_baseline",
            app.bootstrap_servers,
            contracts.topic("transactions"),
            str(len(tx)),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    TopicAdmin(app.bootstrap_servers).delete(contracts.catalog.full_names())
    for line in done.stdout.splitlines():
        if line.startswith(N_REPORT + "="):
            return {"faust_table_events_per_s": int(line.split("=", 1)[1])}
    return {"faust_table_events_per_s": None, "faust_error": (done.stderr or done.stdout)[-500:]}


def freshness(app: Slipstream, config: FeatureBenchConfig, say: Say) -> dict[str, Any]:
    contracts = _scoped(app, "fresh")
    project = f"bench_{uuid.uuid4().hex[:6]}"
    apply_repo(app.feast_config(project), [FRAUD])
    job = EngineJob(app.engine_settings(project=project), contracts.catalog.prefix, "fraud")
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
    producer = EventProducer(app.bootstrap_servers, contracts, linger_ms=0.5)
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
    TopicAdmin(app.bootstrap_servers).delete(contracts.catalog.full_names())
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
    results: dict[str, Any] = {"machine_cores": _cores()}
    if "faust" in config.parts and importlib.util.find_spec("faust") is None:
        msg = "--parts faust needs Faust, the baseline: pip install 'slipstream[bench]' (make test installs it)"
        raise BenchConfigError(msg)
    if "online" in config.parts:
        results |= online_throughput(app, config, say)
    if "faust" in config.parts:
        results |= faust_baseline(app, config, say)
        if results.get("faust_table_events_per_s") and "online_events_per_s" in results:
            results["online_ratio_vs_faust"] = round(
                results["online_events_per_s"] / results["faust_table_events_per_s"], 1
            )
    if "freshness" in config.parts:
        results |= freshness(app, config, say)
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


__all__ = ["FeatureBenchConfig", "FeastRepoConfig", "run_features_bench"]
