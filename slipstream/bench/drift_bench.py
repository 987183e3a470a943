"""`slipstream bench drift`: the drift monitor's CPU per event, with the floor of decoding the same records.

A throwaway namespace (topics under ``bench-drift-<hex>.``, an MLflow registry in a temporary directory) holds one
champion: a small LightGBM on synthetic rows of 15 of the fraud feature names, registered (behind the ONNX parity
gate like any model) with a drift reference of 20 daily training windows in its card. ``slipstream drift`` runs as a
child process, as in production. The benchmark publishes champion predictions (15 features + score, keyed by
customer over every partition) open-loop at ``rate`` per second; event time runs faster than the wall clock so that
a one-day window closes every ``window_every_s`` seconds. Then it waits until the drift group has committed every
prediction, stops the child (SIGTERM: it prints its counts) and reports:

- ``cpu_us_per_event``: CPU time of the drift process (``/proc/<pid>/stat``, user + system) from the end of the
  warm-up to the end of the load, divided by the predictions published in between;
- ``baseline_decode_cpu_us_per_record``: this process decoding the same predictions' bytes, measured here (the floor
  any Python consumer of the topic pays), and ``ratio_to_decode_baseline``;
- ``events_consumed`` (the child's own count, warm-up included) and ``behind`` (predictions the group has not
  committed: 0 when every one was consumed);
- ``windows_closed`` (on ``drift-windows``, read_committed) and ``counted_in_windows`` / ``late``: predictions of
  the closed windows counted in their window, and those missing from it (dropped as late by the monitor);
- ``window_close_lag_p50_ms`` / ``p99``: a window's record on its topic (broker time) minus when the first
  prediction past its end was published — how long after event time passes a window its verdict is readable.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Consumer, TopicPartition

from slipstream.app import Slipstream
from slipstream.bench.exceptions import BenchConfigError, BenchRunError, BenchTimeoutError
from slipstream.bench.loadgen import schedule, sleep_until
from slipstream.bench.shadow_bench import cpu_seconds
from slipstream.bench.stats import percentiles
from slipstream.bench.world import Say
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.transport import EventConsumer, EventProducer, TopicAdmin
from slipstream.schemas.transport.connection import KafkaLike, kafka_config

T0 = datetime(2026, 1, 1, tzinfo=UTC)  # a UTC midnight: the first measured window starts here
DAY_US = 86_400_000_000
REFERENCE_DAYS, REFERENCE_ROWS = 20, 1000
WARMUP = 500
GROUP = "slipstream-drift"


@dataclass(frozen=True)
class DriftBenchConfig:
    rate: float = 1000.0
    seconds: float = 30.0
    window_every_s: float = 5.0

    def __post_init__(self) -> None:
        for name in ("rate", "seconds", "window_every_s"):
            if not getattr(self, name) > 0:
                msg = f"{name} must be > 0, got {getattr(self, name)!r}"
                raise BenchConfigError(msg)


def _names() -> list[str]:
    from slipstream.features.definitions import FRAUD

    return list(FRAUD.feature_names)[:15]


def _rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """Synthetic feature rows: log-normal amounts and counts, 0/1 flags in columns 1 and 2."""
    x = rng.lognormal(mean=np.linspace(1.0, 3.0, d), sigma=0.6, size=(n, d))
    x[:, 1:3] = (rng.random((n, 2)) < np.array([2 / 7, 0.2])).astype(float)
    return x


def _register(app: Slipstream, name: str, names: list[str], say: Say) -> Any:
    """The champion (with a drift reference of ``REFERENCE_DAYS`` training days in its card); its booster."""
    import lightgbm as lgb

    from slipstream.models.reference import drift_reference

    rng = np.random.default_rng(17)
    n = REFERENCE_DAYS * REFERENCE_ROWS
    x = _rows(rng, n, len(names))
    logit = np.log(x[:, 0]) - 4.0 + x[:, 2]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    params = {"objective": "binary", "num_leaves": 15, "verbose": -1, "num_threads": 1, "seed": 17}
    booster = lgb.train(params, lgb.Dataset(x, y), num_boost_round=30)
    t0_us = int(T0.timestamp()) * 1_000_000
    times = t0_us - REFERENCE_DAYS * DAY_US + np.repeat(np.arange(REFERENCE_DAYS) * DAY_US, REFERENCE_ROWS)
    drift = drift_reference(x, booster.predict(x), times + rng.integers(0, DAY_US, n), names)
    registered = app.model_registry.register(
        name,
        booster,
        names,
        threshold=0.5,
        reference={"drift": drift},
        metrics={},
        params=params,
        data_window=("synthetic", "synthetic"),
        data_hash="synthetic-drift",
        sample=x[:256],
    )
    app.model_registry.promote(name, registered.version)
    say(f"registered {name} version {registered.version} with a drift reference of {REFERENCE_DAYS} days")
    return booster


def _prediction(i: int, t: datetime, name: str, names: list[str], row: np.ndarray, score: float) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "prediction_id": f"{i}@1",
        "event_id": str(i),
        "customer_id": i % 5000,
        "model_name": name,
        "model_version": "1",
        "score": score,
        "decision": score >= 0.5,
        "threshold": 0.5,
        "features": dict(zip(names, row.tolist(), strict=True)),
        "event_time": t,
        "received_at": now,
        "scored_at": now,
        "terminal_id": i % 10_000,
    }


def _window_end(t: datetime) -> int:
    """The end (epoch µs) of the one-day UTC window holding event time ``t``."""
    t_us = int(t.timestamp()) * 1_000_000 + t.microsecond
    return t_us - t_us % DAY_US + DAY_US


def _behind(bootstrap: KafkaLike, contracts: Contracts) -> int:
    """Predictions the drift group has not committed yet (the producer is not transactional: no markers)."""
    reader = Consumer({**kafka_config(bootstrap), "group.id": contracts.catalog.prefix + GROUP})
    try:
        topic = contracts.topic("predictions")
        partitions = reader.list_topics(topic, timeout=10).topics[topic].partitions
        behind = 0
        for tp in reader.committed([TopicPartition(topic, p) for p in partitions], timeout=10):
            _low, high = reader.get_watermark_offsets(tp, timeout=10)
            behind += max(0, high - max(tp.offset, 0))
        return behind
    finally:
        reader.close()


def _wait_consumed(run: Slipstream, child: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while _behind(run.kafka, run.contracts) > 0:
        if child.poll() is not None:
            msg = f"slipstream drift exited with {child.returncode}; log: {log}"
            raise BenchRunError(msg)
        if time.monotonic() > deadline:
            msg = f"slipstream drift had not consumed every prediction after {timeout_s:g} s; log: {log}"
            raise BenchTimeoutError(msg)
        time.sleep(0.3)


def _windows(bootstrap: KafkaLike, contracts: Contracts) -> list[tuple[int, int, int]]:
    """(window_end µs, n, broker ms) of every committed drift window."""
    got = []
    config = {"isolation.level": "read_committed"}
    with EventConsumer(bootstrap, contracts, ["drift-windows"], config=config) as consumer:
        quiet = 0
        while quiet < 3:
            batch = consumer.poll_batch(1000, 0.5)
            quiet = 0 if batch.events else quiet + 1
            for e in batch.events:
                end = e.value["window_end"]
                end_us = int(end.timestamp()) * 1_000_000 + end.microsecond if isinstance(end, datetime) else end
                got.append((int(end_us), int(e.value["n"]), e.timestamp_ms or 0))
    return got


def run_drift_bench(app: Slipstream, config: DriftBenchConfig, say: Say) -> dict[str, Any]:
    tag = f"bench-drift-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="slipstream-bench-drift-") as tmp:
        s = app.settings
        run = Slipstream(
            s.model_copy(
                update={
                    "topic_prefix": f"{s.topic_prefix}{tag}.",
                    "fraud_model": f"{tag}-fraud",
                    "state_dir": Path(tmp),
                    "mlflow_tracking_uri": None,
                }
            )
        )
        admin = TopicAdmin(run.kafka)
        run.apply_topics()
        try:
            return _run(run, config, Path(tmp), say)
        finally:
            admin.delete(admin.matching(run.settings.topic_prefix))
            admin.delete_groups(admin.groups(run.settings.topic_prefix), patience_s=0)


def _run(run: Slipstream, config: DriftBenchConfig, tmp: Path, say: Say) -> dict[str, Any]:
    name, names = run.settings.fraud_model, _names()
    booster = _register(run, name, names, say)
    n = round(config.rate * config.seconds)
    rng = np.random.default_rng(5)
    rows = _rows(rng, n + WARMUP, len(names))
    scores = booster.predict(rows)
    step = timedelta(microseconds=DAY_US / (config.rate * config.window_every_s))  # event time per prediction
    env = {
        **os.environ,
        "SLIPSTREAM_TOPIC_PREFIX": run.settings.topic_prefix,
        "SLIPSTREAM_FRAUD_MODEL": name,
        "SLIPSTREAM_STATE_DIR": str(tmp),
        **run.kafka_environment(),
        "REDIS_URL": run.redis_url,
    }
    log_path = tmp / "drift.log"
    crossed: dict[int, float] = {}  # window end (µs) -> wall ms when the first prediction past it was published
    published: Counter[int] = Counter()  # window end (µs) -> predictions published into the window
    with open(log_path, "ab") as log:
        cmd = [sys.executable, "-m", "slipstream", "drift"]
        child = subprocess.Popen(cmd, env=env, stdout=log, stderr=log)  # noqa: S603 - our own interpreter and command
        try:
            with EventProducer(run.kafka, run.contracts, linger_ms=5) as producer:
                # warm-up: the day before T0 (its window closes with the first measured predictions)
                for i in range(n, n + WARMUP):
                    t = T0 - timedelta(days=1) + (i - n) * step
                    producer.send("predictions", _prediction(i, t, name, names, rows[i], float(scores[i])))
                    published[_window_end(t)] += 1
                producer.flush()
                say(f"warming up: waiting for slipstream drift to consume {WARMUP} predictions")
                _wait_consumed(run, child, log_path, 180)
                start_cpu = cpu_seconds(child.pid)
                say(f"publishing {n:,} predictions at {config.rate:g}/s, a window every {config.window_every_s:g} s")
                started = time.perf_counter()
                next_end = int(T0.timestamp()) * 1_000_000
                for i, due in enumerate(schedule(config.rate, config.seconds)):
                    sleep_until(started + due)
                    t = T0 + i * step
                    producer.send("predictions", _prediction(i, t, name, names, rows[i], float(scores[i])))
                    end = _window_end(t)
                    published[end] += 1
                    if end > next_end:
                        crossed[next_end] = time.time() * 1000
                        next_end = end
                producer.flush()
            say("waiting for slipstream drift to consume every prediction")
            _wait_consumed(run, child, log_path, 300)
            cpu = cpu_seconds(child.pid) - start_cpu
        finally:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(10)
    text = log_path.read_text(errors="replace")
    consumed = re.search(r"from (\d+) predictions", text)
    if consumed is None:
        msg = f"slipstream drift did not print its counts; log: {log_path}"
        raise BenchRunError(msg)
    behind = _behind(run.kafka, run.contracts)
    windows = _windows(run.kafka, run.contracts)
    counts = {"consumed": int(consumed.group(1)), "behind": behind}
    return _summary(run, config, n, rows, scores, cpu, counts, windows, (published, crossed))


def _summary(
    run: Slipstream,
    config: DriftBenchConfig,
    n: int,
    rows: np.ndarray,
    scores: np.ndarray,
    cpu: float,
    counts: dict[str, int],
    windows: list[tuple[int, int, int]],
    sent: tuple[Counter[int], dict[int, float]],
) -> dict[str, Any]:
    name, names = run.settings.fraud_model, _names()
    serde = run.contracts.serde("predictions")
    encoded = [serde.encode(_prediction(i, T0, name, names, rows[i], float(scores[i]))) for i in range(min(n, 20_000))]
    started = time.process_time()
    for blob in encoded:
        serde.decode(blob)
    decode_us = (time.process_time() - started) / len(encoded) * 1e6
    per_event = cpu / n * 1e6
    published, crossed = sent
    counted = sum(w_n for end, w_n, _ in windows if end in published)
    lags = [float(ts - crossed[end]) for end, _, ts in windows if end in crossed]
    lag = percentiles(lags)
    return {
        "predictions": n,
        "rate": config.rate,
        "seconds": config.seconds,
        "features": len(names),
        "cpu_us_per_event": round(per_event, 1),
        "baseline_decode_cpu_us_per_record": round(decode_us, 1),
        "ratio_to_decode_baseline": round(per_event / decode_us, 2),
        "events_consumed": counts["consumed"],
        "behind": counts["behind"],
        "windows_closed": len(windows),
        "counted_in_windows": counted,
        "late": sum(published[end] for end, _, _ in windows if end in published) - counted,
        "window_close_lag_p50_ms": lag["p50_ms"],
        "window_close_lag_p99_ms": lag["p99_ms"],
    }
