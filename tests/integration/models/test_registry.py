"""The registry on MLflow (tmp sqlite) and real Kafka: promote, roll back, refuse corrupt or mismatched models;
load a version, replay its parity sample; register and load the reco ranker."""

from __future__ import annotations

import json
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from slipstream.models.artifacts import CARD_FILE, ONNX_FILE, reference_distribution
from slipstream.models.exceptions import ArtifactCorruptError, FeatureMismatchError, ParityError, RegistryError
from slipstream.models.reco import FEATURES as RECO_FEATURES
from slipstream.models.registry import ModelRegistry, default_tracking_uri
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.transport import EventConsumer, EventProducer
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


def _ranker() -> tuple[lgb.Booster, np.ndarray]:
    """A lambdarank booster over the reco features (synthetic values: queries of 40 candidates, grades 0-2)."""
    rng = np.random.default_rng(5)
    x = np.round(rng.gamma(1.5, 20.0, (4000, len(RECO_FEATURES))), 1)
    grade = np.digitize(x[:, 0] + x[:, -1] + rng.normal(0, 10, 4000), (40.0, 70.0))
    params = {"objective": "lambdarank", "num_leaves": 15, "verbose": -1, "num_threads": 1, "min_data_in_leaf": 20}
    data = lgb.Dataset(x, grade, group=[40] * 100, feature_name=list(RECO_FEATURES))
    return lgb.train(params, data, num_boost_round=40), x


def _card_path(registry: ModelRegistry, root: Path, name: str, version: str) -> Path:
    run_id = str(registry.client.get_model_version(name, version).run_id)
    (path,) = [p for p in root.rglob(CARD_FILE) if run_id in str(p)]
    return path


def test_versions_load_with_their_parity_sample(services: Services, contracts: Contracts, tmp_path: Path) -> None:
    registry = ModelRegistry(default_tracking_uri(tmp_path), tmp_path / "mlruns")
    v1, v2 = _register(registry, 1), _register(registry, 2)

    first = registry.load_version("fraud", v1, expected_features=NAMES)  # no alias needed
    assert (first.version, first.kind, first.threshold) == (v1, "binary", 0.5)
    report = first.check_parity()
    assert report.passed and report.n == 64 and report.max_abs_diff < 1e-6
    sample = first.card["parity_sample"]
    booster, x = _booster(1)
    np.testing.assert_array_equal(sample["x"], x[np.linspace(0, 499, 64).round().astype(int)])  # of the 500 given
    np.testing.assert_allclose(sample["expected"], booster.predict(np.asarray(sample["x"])), rtol=0, atol=1e-15)
    assert registry.load_version("fraud", int(v2)).check_parity().passed
    with pytest.raises(RegistryError, match="model 'fraud' has no version '9'"):
        registry.load_version("fraud", 9)

    # a ranker: raw scores, no threshold, its own parity sample; a REGISTERED event announces it
    ranker, rx = _ranker()
    with EventProducer(services.bootstrap_servers, contracts) as producer:
        registered = registry.register(
            "reco",
            ranker,
            RECO_FEATURES,
            threshold=0.0,
            reference=reference_distribution(rx, ranker.predict(rx), RECO_FEATURES, score_range=None),
            metrics={"ndcg_at_10": 0.3},
            params={"objective": "lambdarank"},
            data_window=("2024-01-01", "2024-01-28"),
            data_hash="reco-hash",
            sample=rx,
            producer=producer,
        )
        registry.promote("reco", registered.version, producer=producer)
    assert registered.parity.n == 4000 and registered.parity.max_abs_diff < 1e-6
    events = _model_events(services, contracts, 2)
    assert [(e["action"], e["model_name"], e["version"]) for e in events] == [
        ("REGISTERED", "reco", registered.version),
        ("PROMOTED", "reco", registered.version),
    ]
    reco = registry.load("reco", expected_features=RECO_FEATURES)
    assert (reco.version, reco.kind, reco.scorer.output, reco.card["kind"]) == ("1", "ranking", "raw_score", "ranking")
    assert reco.check_parity().passed
    scores = reco.scorer.predict(rx[:200])
    np.testing.assert_allclose(scores, ranker.predict(rx[:200]), rtol=0, atol=1e-5)
    assert scores.min() < 0 < scores.max()  # raw scores, not probabilities
    histogram = reco.card["reference"]["score"]
    all_scores = ranker.predict(rx)
    assert sum(histogram["counts"]) == 4000  # the raw scores' own range, not (0, 1): none left out
    assert (histogram["edges"][0], histogram["edges"][-1]) == (all_scores.min(), all_scores.max())


def test_a_card_whose_parity_sample_disagrees_is_refused(tmp_path: Path) -> None:
    registry = ModelRegistry(default_tracking_uri(tmp_path), tmp_path / "mlruns")
    v1, v2 = _register(registry, 1), _register(registry, 2)
    card_path = _card_path(registry, tmp_path / "mlruns", "fraud", v2)
    card = json.loads(card_path.read_text())
    card["parity_sample"]["expected"][5] = 1.0 - card["parity_sample"]["expected"][5]  # an ONNX/booster mix-up
    card_path.write_text(json.dumps(card))

    tampered = registry.load_version("fraud", v2, expected_features=NAMES)  # the ONNX checksum still holds
    with pytest.raises(ParityError, match=rf"model 'fraud' version {v2} fails its parity check: at row 5 of 64"):
        tampered.check_parity()
    assert registry.load_version("fraud", v1).check_parity().passed  # the other version is untouched

    del card["parity_sample"]
    card_path.write_text(json.dumps(card))
    with pytest.raises(ParityError, match=rf"model 'fraud' version {v2} has no parity sample"):
        registry.load_version("fraud", v2).check_parity()
