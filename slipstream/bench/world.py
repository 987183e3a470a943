"""A benchmark's own small world, built from nothing and removed afterwards: the scorer and end-to-end benchmarks
measure the real serving code against real state, not mocks.

Per run (tag ``bench-<kind>-<hex>``): its own topics (prefix), Feast project and repository, and registered model
names, so it neither reads nor disturbs what else runs on the platform. :func:`build_world`

1. simulates a few weeks of the Fraud Handbook's card traffic (transactions and their labels);
2. publishes the first ``load_days`` and runs the real online engine over them, so Redis holds each customer's and
   terminal's window state and Feast rows exactly as production would have written them;
3. trains two fraud models on the same days (point-in-time features from the offline engine; the second with other
   hyper-parameters, for the hot-swap test), registers both behind the ONNX parity gate and makes the first champion.

The rest of the simulated days are held out: what the benchmarks score or produce.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import IO, Any

import pandas as pd

from slipstream.app import Slipstream
from slipstream.bench.exceptions import BenchTimeoutError
from slipstream.bench.loadgen import fine_timers
from slipstream.features.definitions import FRAUD
from slipstream.features.feast_repo import FeastRepoConfig, apply_repo, view_layouts
from slipstream.features.redis_client import redis_client
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.transport import EventProducer, TopicAdmin
from slipstream.streams.engine.app import EngineJob, run_processes
from slipstream.streams.engine.runner import StageStats
from slipstream.streams.publish import frame_records

Say = Callable[[str], None]
TX_COLUMNS = ["transaction_id", "event_time", "customer_id", "terminal_id", "amount"]


@dataclass
class World:
    """One benchmark run's namespace, data, models and (optionally still running) engine."""

    tag: str
    app: Slipstream  # settings scoped to the run: topic prefix, Feast project, model names
    feast: FeastRepoConfig
    model: str
    versions: list[str]
    split: pd.Timestamp
    heldout: pd.DataFrame
    heldout_labels: pd.DataFrame
    train: pd.DataFrame
    fitted: list[Any]  # the FraudModel of each version
    setup: dict[str, Any] = field(default_factory=dict)
    engine_stop: threading.Event | None = None
    engine_thread: threading.Thread | None = None
    engine_stats: dict[str, StageStats] = field(default_factory=dict)
    engine_errors: list[BaseException] = field(default_factory=list)

    def check_engine(self) -> None:
        """Raise the engine's error, if it failed."""
        if self.engine_errors:
            raise self.engine_errors[0]

    @property
    def contracts(self) -> Contracts:
        return self.app.contracts

    def env(self) -> dict[str, str]:
        """Environment for a child process (``slipstream serve``, ``score-stream``) that joins this run."""
        s = self.app.settings
        inherited = {
            k: v
            for k, v in os.environ.items()  # importing Feast (this process did) sets these to a temp dir of its own,
            # which would put a child's prometheus_client in multi-process mode (mmap-backed, slower): not ours
            if not (k.startswith("PROMETHEUS_MULTIPROC") and os.path.basename(v).startswith("feast_metrics_"))
        }
        return {
            **inherited,
            "SLIPSTREAM_TOPIC_PREFIX": s.topic_prefix,
            "SLIPSTREAM_FEAST_PROJECT": s.feast_project,
            "SLIPSTREAM_FRAUD_MODEL": s.fraud_model,
            "SLIPSTREAM_RECO_MODEL": s.reco_model,
            "SLIPSTREAM_STATE_DIR": str(s.state_dir.absolute()),
            **self.app.kafka_environment(),  # given: the child never starts a platform
            "REDIS_URL": self.app.redis_url,
        }

    def stop_engine(self) -> None:
        if self.engine_stop is not None and self.engine_thread is not None:
            self.engine_stop.set()
            self.engine_thread.join(60)
            self.engine_stop = self.engine_thread = None

    def cleanup(self, say: Say) -> None:
        """Remove what the run created: topics, Redis keys, the Feast repository, the registered models."""
        self.stop_engine()
        remove_run(self.app, self.tag, say)  # self.app is already scoped to the run


def stop_child(proc: subprocess.Popen[bytes], log: IO[bytes]) -> None:
    """SIGTERM a benchmark's child command, wait for it (kill after 30 s), then close its log."""
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    log.close()


def run_settings(app: Slipstream, tag: str) -> Slipstream:
    """The composition root of run ``tag``: its topic prefix, Feast project and model names."""
    base = app.settings
    settings = base.model_copy(
        update={
            "topic_prefix": f"{base.topic_prefix}{tag}.",
            "feast_project": tag.replace("-", "_"),
            "fraud_model": f"{tag}-fraud",
            "reco_model": f"{tag}-reco",  # never registered: the reco endpoint stays off
        }
    )
    return Slipstream(settings)


def remove_run(run: Slipstream, tag: str, say: Say) -> None:
    """Delete run ``tag``'s topics, Redis keys (every simulated customer and terminal), Feast repo and models.

    ``run`` is the run's own composition root (:func:`run_settings`), whose names are the run's.
    """
    from slipstream.streams.simulate.fraud import FraudSimConfig

    say(f"cleaning up {tag}…")
    TopicAdmin(run.kafka).delete(run.contracts.catalog.full_names())
    client = redis_client(run.redis_url)  # one Redis or a Redis Cluster: DEL is split by slot
    layouts = view_layouts([FRAUD], run.settings.feast_project)
    sim = FraudSimConfig()
    for view, key, n in (
        ("customer_spending", "customer_id", sim.n_customers),
        ("terminal_risk", "terminal_id", sim.n_terminals),
    ):
        keys = [layouts[view].key({key: i}) for i in range(n)]
        for i in range(0, len(keys), 5000):
            client.delete(*keys[i : i + 5000])
    shutil.rmtree((run.settings.state_dir / "bench" / tag).absolute(), ignore_errors=True)
    registry = run.model_registry
    try:
        registry.client.delete_registered_model(run.settings.fraud_model)
    except Exception as exc:  # noqa: BLE001 - best effort: a leftover model is harmless
        say(f"could not delete model {run.settings.fraud_model!r}: {exc}")
    experiment = registry.client.get_experiment_by_name(f"slipstream/{run.settings.fraud_model}")
    if experiment is not None and experiment.lifecycle_stage == "active":
        registry.client.delete_experiment(experiment.experiment_id)


def _simulate(days: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    from slipstream.streams.simulate.fraud import (
        FraudSimConfig,
        label_events,
        simulate_transactions,
        to_transaction_events,
    )

    config = FraudSimConfig(nb_days=days, label_delay=timedelta(days=7))
    frame = simulate_transactions(config)
    tx = to_transaction_events(frame)
    tx["tx_fraud"] = frame["TX_FRAUD"].to_numpy()
    return tx, label_events(frame, config)


def _train(world: World, tx: pd.DataFrame, labels: pd.DataFrame, say: Say) -> None:
    from slipstream.models.dataset import data_hash, fraud_training_frame, window
    from slipstream.models.fraud import train_fraud
    from slipstream.models.publish import register_fraud

    started = time.perf_counter()
    frame = fraud_training_frame(tx, labels)
    split = world.split
    train_set = window(frame, split - pd.Timedelta(days=14), split - pd.Timedelta(days=7))
    valid_set = window(frame, split - pd.Timedelta(days=7), split)
    window_dates = (str(train_set["event_time"].min().date()), str(valid_set["event_time"].max().date()))
    frame_hash = data_hash(frame)
    registry = world.app.model_registry
    producer = world.app.producer()
    variants: list[tuple[dict[str, Any] | None, int]] = [(None, 42), ({"num_leaves": 15, "n_estimators": 200}, 7)]
    try:
        for params, seed in variants:
            model = train_fraud(train_set, valid_set, params=params, seed=seed)
            registered, _ = register_fraud(
                registry,
                world.model,
                model,
                train_set,
                valid_set,
                data_window=window_dates,
                data_hash=frame_hash,
                producer=producer,
                sample_rows=5000,
            )
            world.versions.append(registered.version)
            world.fitted.append(model)
            say(f"registered {world.model} v{registered.version} ({model.best_iteration} trees)")
        registry.promote(world.model, world.versions[0], producer=producer)
    finally:
        producer.flush()
    world.train = train_set
    world.setup["train_rows"] = len(train_set)
    world.setup["train_seconds"] = round(time.perf_counter() - started, 1)


def open_world(
    app: Slipstream, kind: str, *, load_days: int, heldout_days: int, keep_engine: bool, say: Say
) -> tuple[World, dict[str, Any]]:
    """A benchmark's start: the platform up, fine timers, the machine's state noted, then :func:`build_world`.
    Returns the world and the results dict to fill (cores and load average at start already in it)."""
    app.ensure_platform()
    fine_timers()
    load_start = os.getloadavg()[0]
    world = build_world(app, kind, load_days=load_days, heldout_days=heldout_days, keep_engine=keep_engine, say=say)
    return world, {"machine_cores": os.cpu_count() or 0, "load_avg_1m_at_start": round(load_start, 2)}


def build_world(app: Slipstream, kind: str, *, load_days: int, heldout_days: int, keep_engine: bool, say: Say) -> World:
    """Simulate, load the engine, train and register; with ``keep_engine`` the engine keeps running afterwards."""
    tag = f"bench-{kind}-{uuid.uuid4().hex[:6]}"
    run = run_settings(app, tag)
    try:
        return _build(app, run, tag, load_days, heldout_days, keep_engine, say)
    except BaseException:
        remove_run(run, tag, say)
        raise


def _build(
    app: Slipstream, run: Slipstream, tag: str, load_days: int, heldout_days: int, keep_engine: bool, say: Say
) -> World:
    settings = run.settings
    run.apply_topics()
    bench_dir = (app.settings.state_dir / "bench" / tag).absolute()
    feast = FeastRepoConfig(
        project=settings.feast_project,
        repo_dir=bench_dir / "feast",
        offline_dir=bench_dir / "offline",
        redis_url=run.redis_url,
    )
    apply_repo(feast, [FRAUD])
    say(f"{tag}: simulating {load_days + heldout_days} days of card traffic…")
    tx, labels = _simulate(load_days + heldout_days)
    split = tx["event_time"].min().normalize() + pd.Timedelta(days=load_days)
    load_tx, load_labels = tx[tx["event_time"] < split], labels[labels["event_time"] < split]
    world = World(
        tag=tag,
        app=run,
        feast=feast,
        model=settings.fraud_model,
        versions=[],
        split=split,
        heldout=tx[tx["event_time"] >= split].reset_index(drop=True),
        heldout_labels=labels[labels["event_time"] >= split].reset_index(drop=True),
        train=pd.DataFrame(),
        fitted=[],
    )
    world.setup |= {
        "tag": tag,
        "topic_prefix": settings.topic_prefix,
        "feast_project": settings.feast_project,
        "model": world.model,
        "load_days": load_days,
        "loaded_transactions": len(load_tx),
        "loaded_labels": len(load_labels),
        "heldout_transactions": len(world.heldout),
    }
    _start_engine(world, keep_engine)
    try:
        _load(world, load_tx, load_labels, keep_engine, say)
    except BaseException:
        world.stop_engine()
        raise
    return world


def _load(world: World, load_tx: pd.DataFrame, load_labels: pd.DataFrame, keep_engine: bool, say: Say) -> None:
    run, load_days = world.app, world.setup["load_days"]
    say(f"publishing {len(load_tx):,} transactions and {len(load_labels):,} labels ({load_days} days) to the engine…")
    started = time.perf_counter()
    with EventProducer(run.kafka, run.contracts, linger_ms=20) as producer:
        for record in frame_records(load_tx[TX_COLUMNS]):
            producer.send("transactions", record)
        for record in frame_records(load_labels):
            producer.send("labels", record)
    say("training two fraud models and registering them…")
    _train(world, load_tx, load_labels, say)
    _wait_engine(world, len(load_tx) + len(load_labels), keep_engine, say)
    world.setup["engine_load_seconds"] = round(time.perf_counter() - started, 1)


def _start_engine(world: World, keep: bool) -> None:
    job = EngineJob(
        world.app.engine_settings(project=world.feast.project, colocated=True), world.contracts.catalog.prefix, "fraud"
    )
    stop = threading.Event()

    def on_batch(stage: str, stats: StageStats) -> None:
        world.engine_stats[stage] = stats

    def work() -> None:
        try:
            run_processes(job, stop, until_idle_s=None if keep else 3.0, on_batch=on_batch)
        except BaseException as exc:  # noqa: BLE001 - re-raised by whoever waits on the engine
            world.engine_errors.append(exc)

    world.engine_stop, world.engine_thread = stop, threading.Thread(target=work, name="bench-engine", daemon=True)
    world.engine_thread.start()


def _wait_engine(world: World, events: int, keep: bool, say: Say) -> None:
    """Until the engine has applied every loaded event (and, without ``keep``, exited once idle)."""
    say("waiting for the engine to apply them…")
    deadline = time.monotonic() + 900
    last_applied, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        world.check_engine()
        thread = world.engine_thread
        if not keep and thread is not None and not thread.is_alive():
            world.check_engine()
            world.engine_stop = world.engine_thread = None
            return
        customer, terminal = world.engine_stats.get("customer"), world.engine_stats.get("terminal")
        applied = terminal.applied if terminal is not None else -1
        if applied != last_applied:
            last_applied, quiet_since = applied, time.monotonic()
        if keep and customer is not None and customer.consumed >= events and time.monotonic() - quiet_since > 2.0:
            return
        time.sleep(0.2)
    msg = f"the engine did not apply {events:,} events within 15 minutes"
    raise BenchTimeoutError(msg)


__all__ = ["World", "build_world"]
