"""A small shadow world on the real broker and MLflow (tmp sqlite): tiny LightGBM models on the fraud feature
names, champion predictions and feature-log vectors produced the way the scorer and the engine produce them."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from slipstream.features.definitions.fraud import FRAUD
from slipstream.models.artifacts import reference_distribution
from slipstream.models.registry import ModelRegistry, default_tracking_uri
from slipstream.monitoring.shadow import ShadowSettings, ShadowWorker
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.exceptions import SlipstreamError
from slipstream.schemas.transport import EventConsumer
from tests.samples import T0, sample

NAMES = tuple(FRAUD.feature_names)
CHAMPION_FEATURES = NAMES[:8]  # what the champion uses (and so what its predictions carry)
NEW_FEATURES = (*NAMES[:6], NAMES[12], NAMES[15])  # two features the champion does not use
FAST_GROUP = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}


def registry_at(tmp: Path) -> ModelRegistry:
    return ModelRegistry(default_tracking_uri(tmp), tmp / "mlruns")


def register(registry: ModelRegistry, names: Sequence[str], seed: int) -> str:
    """A small binary LightGBM on random data over ``names``, registered behind the parity gate."""
    rng = np.random.default_rng(seed)
    x = rng.random((1500, len(names)))
    y = (x[:, 0] + x[:, -1] * rng.random(1500) > 0.9).astype(int)
    params = {"objective": "binary", "num_leaves": 7, "verbose": -1, "num_threads": 1, "seed": seed}
    booster = lgb.train(params, lgb.Dataset(x, y, feature_name=list(names)), num_boost_round=8)
    registered = registry.register(
        "fraud",
        booster,
        list(names),
        threshold=0.5,
        reference=reference_distribution(x, booster.predict(x), list(names)),
        metrics={"average_precision": 0.5},
        params={"num_leaves": 7},
        data_window=("2018-07-25", "2018-07-31"),
        data_hash=f"hash-{seed}",
        sample=x[:400],
    )
    return registered.version


def features(i: int) -> dict[str, float]:
    """The engine's vector of event ``i``: every fraud feature, a fixed function of ``i``."""
    rng = np.random.default_rng(10_000 + i)
    return {name: float(v) for name, v in zip(NAMES, rng.random(len(NAMES)), strict=True)}


def prediction(i: int, champion: str = "1") -> dict[str, Any]:
    full = features(i)
    score = float(np.random.default_rng(i).random())
    return sample("prediction", i) | {
        "prediction_id": f"{i}@{champion}",
        "event_id": str(i),
        "customer_id": i % 97,
        "model_version": champion,
        "score": score,
        "decision": score >= 0.5,
        "features": {n: full[n] for n in CHAMPION_FEATURES},
        "event_time": T0 + timedelta(milliseconds=10 * i),
    }


def vector(i: int) -> dict[str, Any]:
    t = T0 + timedelta(milliseconds=10 * i)
    return {
        "feature_set": "fraud",
        "event_id": str(i),
        "entity_key": str(i % 97),
        "event_time": t,
        "features": features(i),
        "newest_event_time": t,
        "computed_at": t,
    }


def settings(worker: str = "0", runtime: str = "kafka", **overrides: Any) -> ShadowSettings:
    """A fraud shadow worker; on the Kafka runtime with a fast group (librdkafka settings: the Faust runtime's group
    has the engine's session settings)."""
    fast = FAST_GROUP if runtime == "kafka" else {}
    return ShadowSettings(models=("fraud",), worker=worker, consumer_config=fast, **overrides)


@contextmanager
def running(worker: ShadowWorker) -> Iterator[ShadowWorker]:
    """The worker on a thread of this process, stopped (and its thread joined) on the way out."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            worker.run(stop)
        except SlipstreamError as exc:  # raised again by the test on the way out
            errors.append(exc)

    thread = threading.Thread(target=work, name="shadow-under-test", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        stop.set()
        thread.join(60)
        if errors:
            raise errors[0]


def committed(bootstrap: str, contracts: Contracts, topic: str, quiet_polls: int = 3) -> list[dict[str, Any]]:
    """Every committed record of ``topic`` now (read_committed, until ``quiet_polls`` empty polls)."""
    got: list[dict[str, Any]] = []
    with EventConsumer(bootstrap, contracts, [topic], config={"isolation.level": "read_committed"}) as reader:
        quiet = 0
        while quiet < quiet_polls:
            batch = reader.poll_batch(5000, 0.5)
            got.extend(e.value for e in batch.events)
            quiet = 0 if batch.events else quiet + 1
    return got
