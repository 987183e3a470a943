"""A small fraud world on the real broker and Redis: history in the online store, a registered champion, and the
offline features every scored transaction must equal."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from slipstream.app import Slipstream
from slipstream.features.definitions.fraud import FRAUD
from slipstream.features.offline import compute_offline
from slipstream.models.artifacts import reference_distribution
from slipstream.models.registry import ModelRegistry
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.transport import EventProducer
from slipstream.serving.stream import ScoreStream
from slipstream.settings import load_settings
from slipstream.streams.engine.app import EngineJob, run_threads
from slipstream.streams.engine.runner import EngineSettings
from tests.conftest import Services

DAY_US = 86_400 * 1_000_000


def frame(records: Sequence[Mapping[str, Any]], times: Sequence[str]) -> pd.DataFrame:
    df = pd.DataFrame(list(records))
    for column in times:
        df[column] = pd.to_datetime(df[column], unit="us", utc=True)
    return df


def offline_vectors(
    tx: Sequence[Mapping[str, Any]], labels: Sequence[Mapping[str, Any]]
) -> dict[int, dict[str, float]]:
    """The offline engine's features of every transaction, by transaction id."""
    result = compute_offline(
        FRAUD,
        {
            "transactions": frame(tx, ["event_time"]),
            "labels": frame(labels, ["event_time", "tx_event_time"])
            if labels
            else pd.DataFrame(columns=["transaction_id", "event_time", "tx_event_time", "terminal_id", "is_fraud"]),
        },
    )
    vectors = result.vectors.set_index("transaction_id")
    names = list(FRAUD.feature_names)
    return {int(tid): {n: float(row[n]) for n in names} for tid, row in vectors[names].iterrows()}


def cli_env(services: Services, app: Slipstream, project: str) -> dict[str, str]:
    """Environment for a `slipstream` command that joins the world: its services, state, topic prefix and project."""
    s = app.settings
    return {
        "KAFKA_BOOTSTRAP_SERVERS": services.bootstrap_servers,
        "REDIS_URL": services.redis_url,
        "SLIPSTREAM_STATE_DIR": str(s.state_dir),
        "SLIPSTREAM_TOPIC_PREFIX": s.topic_prefix,
        "SLIPSTREAM_FEAST_PROJECT": project,
    }


def publish(services: Services, contracts: Contracts, topic: str, records: Sequence[Mapping[str, Any]]) -> None:
    with EventProducer(services.bootstrap_servers, contracts, linger_ms=5) as producer:
        for record in records:
            producer.send(topic, record)


def run_engine(
    services: Services,
    contracts: Contracts,
    project: str,
    stop: threading.Event | None = None,
    schema_registry_url: str | None = None,
) -> None:
    settings = EngineSettings(
        services.bootstrap_servers,
        services.redis_url,
        project=project,
        lateness_s=2.0,
        schema_registry_url=schema_registry_url,
    )
    job = EngineJob(settings, contracts.catalog.prefix, "fraud")
    run_threads(job, stop or threading.Event(), until_idle_s=None if stop else 3.0)


def train_booster(vectors: Mapping[int, Mapping[str, float]], frauds: set[int], seed: int) -> tuple[lgb.Booster, Any]:
    names = list(FRAUD.model_input)
    ids = sorted(vectors)
    x = np.array([[vectors[i][n] for n in names] for i in ids], dtype=np.float64)
    y = np.array([int(i in frauds) for i in ids])
    params = {"objective": "binary", "num_leaves": 15, "verbose": -1, "num_threads": 1, "seed": seed}
    booster = lgb.train(params, lgb.Dataset(x, y, feature_name=names), num_boost_round=20 + 10 * seed)
    return booster, x


def register(registry: ModelRegistry, booster: lgb.Booster, x: Any, *, threshold: float = 0.5) -> str:
    names = list(FRAUD.model_input)
    registered = registry.register(
        "fraud",
        booster,
        names,
        threshold=threshold,
        reference=reference_distribution(x, booster.predict(x), names),
        metrics={"average_precision": 0.5},
        params={"num_leaves": 15},
        data_window=("2018-04-01", "2018-05-01"),
        data_hash=f"test-{uuid.uuid4().hex[:6]}",
        sample=x[:500],
    )
    return registered.version


@dataclass
class FraudWorld:
    services: Services
    contracts: Contracts
    project: str
    app: Slipstream
    registry: ModelRegistry
    history_tx: list[dict[str, Any]]
    history_labels: list[dict[str, Any]]
    live_tx: list[dict[str, Any]]
    frauds: set[int]
    versions: list[str]


def build_world(
    services: Services, contracts: Contracts, tmp: Path, *, schema_registry_url: str | None = None
) -> FraudWorld:
    """40 days of a small simulated world: 35 days of history (with the labels known by then) in the online store;
    the transactions of the next day are the live traffic. Two fraud models registered, the first promoted.
    ``schema_registry_url``: every process of the world speaks the Confluent wire format (``contracts`` must too)."""
    from tests.fraud_reference import small_fraud_streams

    tx, labels = small_fraud_streams(n_customers=100, n_terminals=200, days=37)
    cutoff = tx[0]["event_time"] // DAY_US * DAY_US + 35 * DAY_US
    history_tx = [r for r in tx if r["event_time"] < cutoff]
    history_labels = [r for r in labels if r["event_time"] < cutoff]
    live_tx = [r for r in tx if cutoff <= r["event_time"] < cutoff + DAY_US]
    frauds = {int(r["transaction_id"]) for r in labels if r["is_fraud"]}
    project = f"t{uuid.uuid4().hex[:8]}"
    publish(services, contracts, "transactions", history_tx)
    publish(services, contracts, "labels", history_labels)
    run_engine(services, contracts, project, schema_registry_url=schema_registry_url)

    settings = load_settings(
        schema_registry_url=schema_registry_url,
        kafka_bootstrap_servers=services.bootstrap_servers,
        redis_url=services.redis_url,
        state_dir=tmp,
        feast_project=project,
        topic_prefix=contracts.catalog.prefix,
    )
    app = Slipstream(settings)
    registry = app.model_registry
    vectors = offline_vectors(history_tx, history_labels)
    versions = [register(registry, *train_booster(vectors, frauds, seed)) for seed in (1, 2)]
    with EventProducer(services.bootstrap_servers, contracts) as producer:
        registry.promote("fraud", versions[0], producer=producer)
    return FraudWorld(
        services, contracts, project, app, registry, history_tx, history_labels, live_tx, frauds, versions
    )


@contextmanager
def live_pipeline(world: FraudWorld, schema_registry_url: str | None = None) -> Iterator[tuple[Any, ScoreStream]]:
    """The world's engine (a thread) and its Kafka scorer (``ScoreStream`` in a thread, as `score-stream` runs it),
    the scorer's partitions assigned; yields (scoring service, stream) and stops both on exit."""
    app, contracts = world.app, world.contracts
    stop = threading.Event()
    engine = threading.Thread(
        target=run_engine, args=(world.services, contracts, world.project, stop, schema_registry_url), daemon=True
    )
    engine.start()
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
    scorer = threading.Thread(target=stream.run, args=(stop,), daemon=True)
    try:
        while not consumer.assigned.is_set():
            stream.step(stop)
        scorer.start()
        yield service, stream
    finally:
        stop.set()
        if scorer.is_alive():
            scorer.join(60)
        engine.join(60)
        service.stop()
        consumer.close()
        producer.flush()
