"""The main job as it stands: platform up, Feast repo applied, the feature engine running, simulated card traffic
published live (with poison messages), exact features arriving on the feature log and in Redis, and a live summary.
Later stages (scoring, shadow) plug in here."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import redis

from features.definitions import FRAUD
from features.feast_repo import apply_repo, view_layouts
from features.online_store import RedisFeatureReader
from schemas.transport import EventProducer
from slipstream.app import Slipstream
from streams.engine.app import EngineJob, run_processes
from streams.engine.runner import StageStats
from streams.publish import Pacer


@dataclass
class DemoStats:
    planned: int = 0
    sent: int = 0
    poisoned: int = 0
    frauds_sent: int = 0
    vectors: int = 0
    stages: dict[str, StageStats] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    sample: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    producing: bool = True

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @property
    def dead_lettered(self) -> int:
        return sum(s.dead_lettered for s in self.stages.values())

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms[-20_000:], q)) if self.latencies_ms else float("nan")


def _slice(path: Path, days: float) -> list[dict[str, object]]:
    columns = ["transaction_id", "event_time", "customer_id", "terminal_id", "amount", "tx_fraud"]
    table = pq.read_table(path, columns=columns)
    start = pc.min(table["event_time"]).as_py()
    end = start.timestamp() + days * 86_400
    mask = pc.less(pc.cast(table["event_time"], "int64"), int(end * 1_000_000_000))
    return list(table.filter(mask).to_pylist())


def _publish(
    producer: EventProducer,
    rows: list[dict[str, object]],
    rate: float,
    poison_every: int,
    stats: DemoStats,
    sent_at: dict[str, float],
) -> None:
    contracts = producer.contracts
    serde = contracts.serde("transactions")
    pacer = Pacer(rate)
    for i, row in enumerate(rows):
        pacer.wait(i)
        stats.frauds_sent += bool(row.pop("tx_fraud"))
        value = serde.encode(row)
        key = contracts.key("transactions", row)
        sent_at[str(row["transaction_id"])] = time.perf_counter()
        producer.send_raw(serde.topic, key, value)
        stats.sent += 1
        if poison_every and i % poison_every == poison_every - 1:
            producer.send_raw(serde.topic, key, value[: len(value) // 2])  # a truncated, poison message
            stats.poisoned += 1
    producer.flush()
    stats.producing = False


def run_demo(
    app: Slipstream,
    data: Path,
    *,
    days: float,
    rate: float,
    poison_every: int,
    render: Callable[[DemoStats], None],
    keep: bool = False,
) -> DemoStats:
    """One run in its own topic namespace (``demo-<time>.``): replaying the same simulated slice into topics that
    already hold it would make every event late (and correctly dead-lettered)."""
    rows = _slice(data, days)
    stats = DemoStats(planned=len(rows))
    contracts = app.with_prefix(f"{app.settings.topic_prefix}demo-{time.strftime('%Y%m%d-%H%M%S')}.")
    app.apply_topics(contracts)
    project = app.settings.feast_project
    apply_repo(app.feast_config(project), [FRAUD])
    job = EngineJob(app.engine_settings(project=project), contracts.catalog.prefix, "fraud")
    stop = threading.Event()
    ready = threading.Event()

    def on_batch(stage: str, s: StageStats) -> None:
        stats.stages[stage] = s
        if len(stats.stages) == len(job.stage_names()):
            ready.set()

    engine = threading.Thread(target=lambda: run_processes(job, stop, on_batch=on_batch), daemon=True)
    engine.start()
    layout = view_layouts([FRAUD], project)["customer_spending"]
    reader = RedisFeatureReader(redis.Redis.from_url(app.redis_url), [layout])
    producer = app.producer(linger_ms=1.0, contracts=contracts)
    consumer = app.consumer(["feature-log"], from_beginning=True, processor="demo-reader", contracts=contracts)
    sent_at: dict[str, float] = {}
    ready.wait(60)
    stats.started = time.perf_counter()
    worker = threading.Thread(target=_publish, args=(producer, rows, rate, poison_every, stats, sent_at), daemon=True)
    worker.start()
    last_render = 0.0
    idle_since = time.perf_counter()
    try:
        with consumer:
            while True:
                batch = consumer.poll_batch(max_records=2000, timeout=0.2)
                now = time.perf_counter()
                for event in batch.events:
                    sent = sent_at.pop(str(event.value["event_id"]), None)
                    if sent is not None:  # ours (not a backlog from an earlier run)
                        stats.vectors += 1
                        stats.latencies_ms.append((now - sent) * 1000)
                if batch.events:
                    idle_since = now
                    last = batch.events[-1].value
                    online = reader.read({"customer_id": int(last["entity_key"])})
                    stats.sample = {"customer_id": last["entity_key"], **(online.values if online else {})}
                if now - last_render > 0.25:
                    render(stats)
                    last_render = now
                done = not stats.producing and stats.vectors >= stats.sent
                if done or (not stats.producing and now - idle_since > 15):
                    break
    finally:
        stop.set()
        engine.join(timeout=60)
        worker.join(timeout=5)
        if not keep:
            app.topic_admin().delete(contracts.catalog.full_names())
    render(stats)
    return stats
