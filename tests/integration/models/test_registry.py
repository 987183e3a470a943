"""The registry on MLflow (tmp sqlite) and real Kafka: promote, roll back, refuse corrupt or mismatched models."""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from models.artifacts import ONNX_FILE, reference_distribution
from models.exceptions import ArtifactCorruptError, FeatureMismatchError, ParityError, RegistryError
from models.registry import ModelRegistry, default_tracking_uri
from schemas.contracts import Contracts
from schemas.transport import EventConsumer, EventProducer
from tests.conftest import Services

pytestmark = pytest.mark.integration
NAMES = ("amount", "night", "count", "risk")


def _booster(seed: int) -> tuple[lgb.Booster, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.gamma(2.0, 30.0, 2000), rng.integers(0, 2, 2000), rng.poisson(5, 2000), rng.random(2000)])
    y = ((x[:, 0] > 80) | (x[:, 3] > 0.9)).astype(int)
    params = {"objective": "binary", "num_leaves": 7, "verbose": -1, "num_threads": 1, "seed": seed}
    return lgb.train(params, lgb.Dataset(x, y, feature_name=list(NAMES)), num_boost_round=10 + seed), x


def _register(registry: ModelRegistry, seed: int) -> str:
    booster, x = _booster(seed)
    reference = reference_distribution(x, booster.predict(x), NAMES)
    registered = registry.register(
        "fraud",
        booster,
        NAMES,
        threshold=0.5,
        reference=reference,
        metrics={"average_precision": 0.5 + seed / 100},
        params={"num_leaves": 7},
        data_window=("2018-07-25", "2018-07-31"),
        data_hash=f"hash-{seed}",
        sample=x[:500],
    )
    assert registered.parity.passed
    return registered.version


def _model_events(services: Services, contracts: Contracts, n: int) -> list[dict[str, object]]:
    events: list[dict[str, object]] = []
    with EventConsumer(services.bootstrap_servers, contracts, ["model-events"]) as consumer:
        for _ in range(60):
            events += [e.value for e in consumer.poll_batch(timeout=1.0).events]
            if len(events) >= n:
                break
    return events


def test_promote_rollback_and_refusals(services: Services, contracts: Contracts, tmp_path: Path) -> None:
    registry = ModelRegistry(default_tracking_uri(tmp_path), tmp_path / "mlruns")
    v1, v2 = _register(registry, 1), _register(registry, 2)
    assert (v1, v2) == ("1", "2")

    with EventProducer(services.bootstrap_servers, contracts) as producer:
        registry.promote("fraud", v1, producer=producer)
        registry.promote("fraud", v2, producer=producer)
        assert registry.load("fraud").version == v2
        registry.rollback("fraud", producer)

    events = _model_events(services, contracts, 3)
    assert [(e["action"], e["version"], e["previous_version"]) for e in events] == [
        ("PROMOTED", "1", None),
        ("PROMOTED", "2", "1"),
        ("ROLLED_BACK", "1", "2"),
    ]
    assert all(str(e["artifact_uri"]).endswith(ONNX_FILE) and len(str(e["checksum"])) == 64 for e in events)
    assert registry.load("fraud").version == v1
    listed = {v.version: v for v in registry.list_versions("fraud")}
    assert listed[v1].aliases == ("champion",) and listed[v2].metrics == {"average_precision": 0.52}

    with pytest.raises(RegistryError, match="no previous champion"):
        registry.rollback("fraud")

    # corrupt v2's ONNX file on disk: loading it fails naming both checksums; the champion (v1) still loads
    registry.set_alias("fraud", "challenger", v2)
    (onnx_path,) = [p for p in (tmp_path / "mlruns").rglob(ONNX_FILE) if registry_run(registry, v2) in str(p)]
    onnx_path.write_bytes(onnx_path.read_bytes()[:-10] + b"corrupted!")
    with pytest.raises(ArtifactCorruptError, match=r"expected sha256 [0-9a-f]{64}, got [0-9a-f]{64}"):
        registry.load("fraud", "challenger")
    champion = registry.load("fraud", expected_features=NAMES)
    assert champion.version == v1 and champion.scorer.predict(np.zeros((1, 4))).shape == (1,)

    with pytest.raises(FeatureMismatchError, match=r"missing \['amount_eur'\]; unexpected \['amount'\]"):
        registry.load("fraud", expected_features=("amount_eur", "night", "count", "risk"))


def registry_run(registry: ModelRegistry, version: str) -> str:
    return str(registry.client.get_model_version("fraud", version).run_id)


def test_registration_and_refusal_are_announced(services: Services, contracts: Contracts, tmp_path: Path) -> None:
    registry = ModelRegistry(default_tracking_uri(tmp_path), tmp_path / "mlruns")
    producer = EventProducer(services.bootstrap_servers, contracts)
    booster, x = _booster(3)
    registered = registry.register(
        "fraud",
        booster,
        NAMES,
        threshold=0.5,
        reference={},
        metrics={},
        params={},
        data_window=("2018-07-25", "2018-07-31"),
        data_hash="h",
        sample=x[:200],
        producer=producer,
    )
    wrong = x[:200].copy()
    with pytest.raises(ParityError):  # a sample of the wrong width cannot pass the gate
        registry.register(
            "fraud",
            booster,
            NAMES,
            threshold=0.5,
            reference={},
            metrics={},
            params={},
            data_window=("2018-07-25", "2018-07-31"),
            data_hash="h",
            sample=wrong[:, :2],
            producer=producer,
        )
    events = _model_events(services, contracts, 2)
    assert [e["action"] for e in events] == ["REGISTERED", "REFUSED"]
    assert events[0]["version"] == registered.version
    assert events[0]["checksum"] == registered.checksum
    assert events[1]["reason"]
