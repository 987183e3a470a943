"""The main job as it stands: platform up, simulated card traffic published live, read back, poison messages
dead-lettered with reasons, and a live summary. Later stages (features, scoring, shadow) plug in here."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from schemas.transport import EventProducer
from slipstream.app import Slipstream
from streams.publish import Pacer


@dataclass
class DemoStats:
    planned: int = 0
    sent: int = 0
    poisoned: int = 0
    consumed: int = 0
    dead_lettered: int = 0
    frauds_seen: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    producing: bool = True

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


def _slice(path: Path, days: float) -> list[dict[str, object]]:
    table = pq.read_table(
        path, columns=["transaction_id", "event_time", "customer_id", "terminal_id", "amount", "tx_fraud"]
    )
    start = pc.min(table["event_time"]).as_py()
    end = start.timestamp() + days * 86_400
    mask = pc.less(pc.cast(table["event_time"], "int64"), int(end * 1_000_000_000))
    return list(table.filter(mask).to_pylist())


def _publish(
    app: Slipstream,
    producer: EventProducer,
    rows: list[dict[str, object]],
    rate: float,
    poison_every: int,
    stats: DemoStats,
) -> None:
    serde = app.contracts.serde("transactions")
    pacer = Pacer(rate)
    for i, row in enumerate(rows):
        pacer.wait(i)
        fraud = bool(row.pop("tx_fraud"))
        value = serde.encode(row)
        key = app.contracts.key("transactions", row)
        producer.send_raw(serde.topic, key, value, headers=[("fraud", b"1" if fraud else b"0")])
        stats.sent += 1
        if poison_every and i % poison_every == poison_every - 1:
            producer.send_raw(serde.topic, key, value[: len(value) // 2])  # a truncated, poison message
            stats.poisoned += 1
    producer.flush()
    stats.producing = False


def run_demo(
    app: Slipstream, data: Path, *, days: float, rate: float, poison_every: int, render: Callable[[DemoStats], None]
) -> DemoStats:
    rows = _slice(data, days)
    stats = DemoStats(planned=len(rows))
    producer = app.producer(linger_ms=1.0)
    consumer = app.consumer(["transactions"], from_beginning=False, dead_letters=producer, processor="demo-reader")
    stats.started = time.perf_counter()
    worker = threading.Thread(target=_publish, args=(app, producer, rows, rate, poison_every, stats), daemon=True)
    worker.start()
    last_render = 0.0
    idle_since = time.perf_counter()
    with consumer:
        while True:
            batch = consumer.poll_batch(max_records=2000, timeout=0.2)
            now_ms = time.time() * 1000
            for event in batch.events:
                stats.consumed += 1
                if event.timestamp_ms is not None:
                    stats.latencies_ms.append(now_ms - event.timestamp_ms)
            for failure in batch.failures:
                stats.dead_lettered += 1
                stats.reasons[failure.error_type] += 1
            if len(batch):
                idle_since = time.perf_counter()
            if time.perf_counter() - last_render > 0.25:
                render(stats)
                last_render = time.perf_counter()
            done = not stats.producing and stats.consumed + stats.dead_lettered >= stats.sent + stats.poisoned
            if done or (not stats.producing and time.perf_counter() - idle_since > 10):
                break
    worker.join()
    producer.flush()
    render(stats)
    return stats
