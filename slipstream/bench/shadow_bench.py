"""`slipstream bench shadow`: the shadow consumer and the label joiner under load, in one run.

A throwaway namespace (topics under ``bench-shadow-<hex>.``, an MLflow registry in a temporary directory) holds a
champion and two challengers (LightGBM on synthetic rows with the fraud feature set's names, behind the ONNX parity
gate like any model). ``slipstream shadow`` and ``slipstream outcomes`` run as child processes, as in production.
The benchmark publishes champion predictions open-loop at ``rate`` per second, each with its feature vector, and
each prediction's label ``label_lag_s`` later; halfway it SIGKILLs the shadow consumer and starts it again. Then it
reads everything back (``read_committed``) and reports:

- ``cpu_us_per_prediction``: CPU time of both processes (``/proc/<pid>/stat``, user + system) over the load,
  divided by the predictions; the restarted shadow consumer's start-up is excluded (measured as the first
  incarnation's CPU at readiness) and reported with it in ``cpu_us_per_prediction_with_restart``;
- ``comparison_lag_p50_ms`` / ``p99``: a comparison's broker timestamp minus its prediction's (both topics are
  ``LogAppendTime``), over every comparison (the restart's backlog included), and over the predictions published
  before the SIGKILL (``..._before_kill``: the steady state);
- ``lost`` and ``duplicates``: expected comparisons (predictions x challengers) and outcomes (one per prediction
  and per challenger score) missing, and records beyond one per id;
- ``baseline_decode_cpu_us_per_record``: this process decoding the same predictions' bytes, measured here — the
  floor any Python consumer of the topic pays — and the ratio of the two.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import numpy as np
from confluent_kafka import Consumer, TopicPartition

from slipstream.app import Slipstream
from slipstream.bench.exceptions import BenchConfigError, BenchTimeoutError
from slipstream.bench.loadgen import schedule, sleep_until
from slipstream.bench.stats import percentiles
from slipstream.bench.world import Say
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.transport import EventConsumer, EventProducer, TopicAdmin
from slipstream.schemas.transport.connection import KafkaLike, kafka_config

CHALLENGERS = ("challenger", "challenger-b")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ShadowBenchConfig:
    rate: float = 1000.0
    seconds: float = 60.0
    label_lag_s: float = 2.0
    kill: bool = True
    trees: int = 200

    def __post_init__(self) -> None:
        for name in ("rate", "seconds"):
            if not getattr(self, name) > 0:
                msg = f"{name} must be > 0, got {getattr(self, name)!r}"
                raise BenchConfigError(msg)
        if not self.label_lag_s >= 0:
            msg = f"label_lag_s must be >= 0, got {self.label_lag_s!r}"
            raise BenchConfigError(msg)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid`` so far (and of its waited-for children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / _TICK


def _models(app: Slipstream, name: str, trees: int, say: Say) -> tuple[Any, list[str]]:
    """A champion and two challengers on synthetic rows; returns the champion booster and the feature names."""
    import lightgbm as lgb

    from slipstream.features.definitions import FRAUD

    names = list(FRAUD.feature_names)
    rng = np.random.default_rng(11)
    x = rng.normal(size=(20_000, len(names)))
    logit = x[:, 0] * 1.5 - x[:, 1] + 0.5 * x[:, 2] - 3.0
    y = (rng.random(len(x)) < 1 / (1 + np.exp(-logit))).astype(int)
    registry = app.model_registry
    boosters = []
    for seed in (1, 2, 3):
        params = {"objective": "binary", "num_leaves": 31, "learning_rate": 0.05, "seed": seed, "verbose": -1}
        params["bagging_fraction"], params["bagging_freq"] = 0.8, 1
        booster = lgb.train(params, lgb.Dataset(x, y), num_boost_round=trees)
        registered = registry.register(
            name,
            booster,
            names,
            threshold=0.5,
            reference={},
            metrics={},
            params=params,
            data_window=("synthetic", "synthetic"),
            data_hash=f"synthetic-{seed}",
            sample=x[:256],
        )
        boosters.append((booster, registered.version))
        say(
            f"registered {name} version {registered.version} ({trees} trees, "
            f"parity {registered.parity.max_abs_diff:.1e})"
        )
    registry.promote(name, boosters[0][1])
    for alias, (_, version) in zip(CHALLENGERS, boosters[1:], strict=True):
        registry.set_alias(name, alias, version)
    return boosters[0][0], names


class _Reader:
    """Reads predictions, comparisons and outcomes (read_committed) once the run is over, keeping ids and broker
    times: nothing is decoded while the load runs, so the benchmark's own CPU does not compete with what it
    measures (the broker timestamps say when each record was on its topic)."""

    def __init__(self) -> None:
        self.predictions: dict[str, int] = {}
        self.comparisons: list[tuple[str, str, int]] = []
        self.outcomes: list[str] = []

    def read(self, bootstrap: KafkaLike, contracts: Contracts) -> None:
        self.predictions, self.comparisons, self.outcomes = {}, [], []  # a re-read starts over
        names = {contracts.topic(t): t for t in ("predictions", "shadow-comparisons", "outcomes")}
        config = {"isolation.level": "read_committed"}
        with EventConsumer(bootstrap, contracts, list(names.values()), config=config) as consumer:
            quiet = 0
            while quiet < 3:
                batch = consumer.poll_batch(10_000, 0.5)
                quiet = 0 if batch.events else quiet + 1
                for e in batch.events:
                    topic, ts = names[e.topic], e.timestamp_ms or 0
                    if topic == "predictions":
                        self.predictions[e.value["prediction_id"]] = ts
                    elif topic == "shadow-comparisons":
                        self.comparisons.append((e.value["comparison_id"], e.value["prediction_id"], ts))
                    else:
                        self.outcomes.append(e.value["outcome_id"])


def _behind(bootstrap: KafkaLike, contracts: Contracts, group: str, topics: tuple[str, ...]) -> int:
    """Records of ``topics`` that ``group`` has not committed yet (a transaction marker at a topic's end counts
    one; the callers produce their inputs without transactions, so only ``shadow-comparisons`` has markers)."""
    reader = Consumer({**kafka_config(bootstrap), "group.id": contracts.catalog.prefix + group})
    try:
        metadata = reader.list_topics(timeout=10)
        tps = [
            TopicPartition(contracts.topic(t), p)
            for t in topics
            for p in metadata.topics[contracts.topic(t)].partitions
        ]
        behind = 0
        for tp in reader.committed(tps, timeout=10):
            _low, high = reader.get_watermark_offsets(tp, timeout=10)
            behind += max(0, high - max(tp.offset, 0))
        return behind
    finally:
        reader.close()


def _records(i: int, names: list[str], row: np.ndarray, score: float, name: str) -> tuple[dict[str, Any], ...]:
    t = T0 + timedelta(seconds=i)
    now = datetime.now(UTC)
    customer = i % 5000
    prediction = {
        "prediction_id": f"{i}@1",
        "event_id": str(i),
        "customer_id": customer,
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
    label = {
        "transaction_id": i,
        "customer_id": customer,
        "terminal_id": i % 10_000,
        "tx_event_time": t,
        "event_time": t + timedelta(days=1),
        "is_fraud": score >= 0.5,
    }
    return prediction, label


def _spawn(env: dict[str, str], command: str, log: IO[bytes]) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "slipstream", command]
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=log)  # noqa: S603 - our own interpreter and command


def _wait(
    run: Slipstream, reader: _Reader, n: int, timeout_s: float, procs: list[tuple[subprocess.Popen[bytes], Path]]
) -> None:
    """Until both groups have committed every input and every comparison and outcome of ``n`` predictions is
    readable; a child that exits ends the wait with its log's path."""
    deadline = time.monotonic() + timeout_s
    bootstrap, contracts = run.kafka, run.contracts
    while time.monotonic() < deadline:
        for proc, log_path in procs:
            if proc.poll() is not None:
                msg = f"{log_path.stem} exited with {proc.returncode}; log: {log_path}"
                raise BenchTimeoutError(msg)
        shadow = _behind(bootstrap, contracts, "slipstream-shadow", ("predictions",))
        joined = _behind(bootstrap, contracts, "slipstream-outcomes", ("predictions", "labels"))
        if shadow == 0 and joined == 0:
            reader.read(bootstrap, contracts)
            if len(reader.comparisons) >= n * len(CHALLENGERS) and len(reader.outcomes) >= n * (1 + len(CHALLENGERS)):
                return
        time.sleep(0.5)
    msg = (
        f"waited {timeout_s:g} s: {len(reader.comparisons)}/{n * len(CHALLENGERS)} comparisons, "
        f"{len(reader.outcomes)}/{n * (1 + len(CHALLENGERS))} outcomes"
    )
    raise BenchTimeoutError(msg)


def run_shadow_bench(app: Slipstream, config: ShadowBenchConfig, say: Say) -> dict[str, Any]:
    tag = f"bench-shadow-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="slipstream-bench-shadow-") as tmp:
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


def _run(run: Slipstream, config: ShadowBenchConfig, tmp: Path, say: Say) -> dict[str, Any]:
    name = run.settings.fraud_model
    champion, names = _models(run, name, config.trees, say)
    n = round(config.rate * config.seconds)
    rng = np.random.default_rng(5)
    rows = rng.normal(size=(n + 200, len(names)))
    scores = champion.predict(rows)
    env = {
        **os.environ,
        "SLIPSTREAM_TOPIC_PREFIX": run.settings.topic_prefix,
        "SLIPSTREAM_FRAUD_MODEL": name,
        "SLIPSTREAM_STATE_DIR": str(tmp),
        **run.kafka_environment(),
        "REDIS_URL": run.redis_url,
    }
    logs = {cmd: open(tmp / f"{cmd}.log", "ab") for cmd in ("shadow", "outcomes")}  # closed in finally
    reader = _Reader()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        procs = {cmd: _spawn(env, cmd, log) for cmd, log in logs.items()}
        watched = [(procs[c], tmp / f"{c}.log") for c in procs]
        with EventProducer(run.kafka, run.contracts, linger_ms=5) as producer:
            # warm-up: 200 predictions (ids n..n+199) with their labels, until both processes have answered them
            for i in range(n, n + 200):
                prediction, label = _records(i, names, rows[i], float(scores[i]), name)
                producer.send("predictions", prediction)
                producer.send("labels", label)
            producer.flush()
            say("warming up: waiting for the shadow consumer and the label joiner to answer 200 predictions")
            _wait(run, reader, 200, 180, watched)
            start_cpu = {c: cpu_seconds(p.pid) for c, p in procs.items()}
            startup_cpu = start_cpu["shadow"]
            say(f"publishing {n:,} predictions at {config.rate:g}/s with their labels {config.label_lag_s:g} s later")
            lag_n = round(config.rate * config.label_lag_s)
            kill_at = n // 2 if config.kill else -1
            killed_cpu, kill_ms = 0.0, 0
            started = time.perf_counter()
            for i, due in enumerate(schedule(config.rate, config.seconds)):
                sleep_until(started + due)
                prediction, _ = _records(i, names, rows[i], float(scores[i]), name)
                producer.send("predictions", prediction)
                if i >= lag_n:
                    j = i - lag_n
                    producer.send("labels", _records(j, names, rows[j], float(scores[j]), name)[1])
                if i == kill_at:
                    killed_cpu = cpu_seconds(procs["shadow"].pid) - start_cpu["shadow"]
                    os.kill(procs["shadow"].pid, signal.SIGKILL)
                    procs["shadow"].wait(10)
                    kill_ms = int(time.time() * 1000)
                    procs["shadow"] = _spawn(env, "shadow", logs["shadow"])
                    watched = [(procs[c], tmp / f"{c}.log") for c in procs]
                    say(f"SIGKILLed the shadow consumer after prediction {i:,}; restarted it")
            for j in range(max(0, n - lag_n), n):
                producer.send("labels", _records(j, names, rows[j], float(scores[j]), name)[1])
            producer.flush()
        say("waiting for every comparison and outcome")
        _wait(run, reader, n + 200, 300, watched)
        end_cpu = {c: cpu_seconds(p.pid) for c, p in procs.items()}
        kill_window = (0, 0)
        if config.kill:
            restarted_at = _first_after(reader, kill_ms)
            kill_window = (kill_ms, restarted_at)
            shadow_cpu = killed_cpu + end_cpu["shadow"]
            shadow_steady = shadow_cpu - startup_cpu
        else:
            shadow_cpu = shadow_steady = end_cpu["shadow"] - start_cpu["shadow"]
        outcomes_cpu = end_cpu["outcomes"] - start_cpu["outcomes"]
        time.sleep(1.0)  # anything written twice would be here by now
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in logs.values():
            log.close()
    return _summary(reader, n, rows, names, name, run.contracts, shadow_steady, shadow_cpu, outcomes_cpu, kill_window)


def _first_after(reader: _Reader, kill_ms: int) -> int:
    after = [ts for _, _, ts in reader.comparisons if ts > kill_ms]
    return min(after) if after else kill_ms


def _summary(
    reader: _Reader,
    n: int,
    rows: np.ndarray,
    names: list[str],
    name: str,
    contracts: Contracts,
    shadow_steady: float,
    shadow_cpu: float,
    outcomes_cpu: float,
    kill_window: tuple[int, int],
) -> dict[str, Any]:
    total = n + 200
    ids = [c for c, _, _ in reader.comparisons]
    expected_comparisons = {f"{i}@1~{v}" for i in range(total) for v in ("2", "3")}
    expected_outcomes = {f"{i}@{v}" for i in range(total) for v in ("1", "2", "3")}
    lags, before = [], []
    for _, prediction_id, ts in reader.comparisons:
        sent = reader.predictions.get(prediction_id)
        if sent is None or int(prediction_id.partition("@")[0]) >= n:  # the warm-up's, answered at start-up
            continue
        lags.append(float(ts - sent))
        if not kill_window[0] or sent < kill_window[0]:
            before.append(float(ts - sent))
    dump = os.environ.get("SLIPSTREAM_BENCH_DUMP")
    if dump:  # (prediction on its topic, comparison on its topic) per comparison, ms: for a look at the lag
        Path(dump).write_text("\n".join(f"{reader.predictions.get(p, 0)} {ts}" for _, p, ts in reader.comparisons))
    serde = contracts.serde("predictions")
    encoded = [serde.encode(_records(i, names, rows[i], 0.5, name)[0]) for i in range(min(n, 20_000))]
    started = time.process_time()
    for blob in encoded:
        serde.decode(blob)
    decode_us = (time.process_time() - started) / len(encoded) * 1e6
    steady_us = (shadow_steady + outcomes_cpu) / n * 1e6
    lag = percentiles(lags)
    return {
        "predictions": n,
        "challengers": len(CHALLENGERS),
        "cpu_us_per_prediction": round(steady_us, 1),
        "cpu_us_per_prediction_with_restart": round((shadow_cpu + outcomes_cpu) / n * 1e6, 1),
        "cpu_us_per_prediction_shadow": round(shadow_steady / n * 1e6, 1),
        "cpu_us_per_prediction_label_join": round(outcomes_cpu / n * 1e6, 1),
        "baseline_decode_cpu_us_per_record": round(decode_us, 1),
        "ratio_to_decode_baseline": round(steady_us / decode_us, 1),
        "comparison_lag_p50_ms": lag["p50_ms"],
        "comparison_lag_p99_ms": lag["p99_ms"],
        "comparison_lag_p50_ms_before_kill": percentiles(before)["p50_ms"],
        "comparison_lag_p99_ms_before_kill": percentiles(before)["p99_ms"],
        "restart_window_ms": kill_window[1] - kill_window[0],
        "lost": len(expected_comparisons - set(ids)) + len(expected_outcomes - set(reader.outcomes)),
        "duplicates": (len(ids) - len(set(ids))) + (len(reader.outcomes) - len(set(reader.outcomes))),
        "comparisons": len(ids),
        "outcomes": len(reader.outcomes),
    }
