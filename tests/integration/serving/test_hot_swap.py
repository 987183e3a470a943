"""Model swaps under load over real HTTP, Kafka model-events and MLflow: no request fails, in-flight requests finish
on the old model, and a model that fails its checks is refused while the current one keeps serving."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest

from slipstream.models.artifacts import reference_distribution
from slipstream.schemas.transport import EventProducer
from slipstream.serving.http import create_app
from tests.integration.serving.fixtures import FraudWorld, train_booster
from tests.integration.serving.http_server import Client, running
from tests.integration.serving.load import Load
from tests.integration.serving.test_fraud_scoring import _body

pytestmark = pytest.mark.integration


def _promote(world: FraudWorld, version: str) -> None:
    with EventProducer(world.services.bootstrap_servers, world.contracts) as producer:
        world.registry.promote("fraud", version, producer=producer)


def _metric(port: int, name: str, labels: str) -> float:
    client = Client(port)
    _, text = client.request("GET", "/metrics")
    client.close()
    for line in text.splitlines():
        if line.startswith(name + "{") and all(part in line for part in labels.split(",")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _wrong_features_version(world: FraudWorld) -> str:
    names = ["amount", "night", "count", "risk"]  # not features the scorer computes
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.gamma(2.0, 30.0, 500), rng.integers(0, 2, 500), rng.poisson(5, 500), rng.random(500)])
    y = (x[:, 0] > 80).astype(int)
    booster = lgb.train({"objective": "binary", "num_leaves": 7, "verbose": -1, "num_threads": 1}, lgb.Dataset(x, y), 5)
    return world.registry.register(
        "fraud",
        booster,
        names,
        threshold=0.5,
        reference=reference_distribution(x, booster.predict(x), names),
        metrics={},
        params={},
        data_window=("2018-04-01", "2018-05-01"),
        data_hash="wrong-features",
        sample=x,
    ).version


def _corrupt_version(world: FraudWorld, tmp: Path) -> str:
    from tests.integration.serving.fixtures import offline_vectors, register

    booster, x = train_booster(offline_vectors(world.history_tx[:2000], world.history_labels), world.frauds, 3)
    version = register(world.registry, booster, x)
    run_id = world.registry.client.get_model_version("fraud", version).run_id
    (onnx,) = tmp.glob(f"mlruns/**/{run_id}/artifacts/model/model.onnx")
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))
    return version


def test_promotion_under_load_fails_no_request_and_bad_models_are_refused(world: FraudWorld, tmp_path: Path) -> None:
    v1, v2 = world.versions
    records = world.live_tx

    def body(n: int) -> dict[str, Any]:
        return _body(records[n % len(records)])

    service = world.app.scoring_service(contracts=world.contracts)
    with running(create_app(service)) as port, Load(port, body, rate=500, threads=4) as load:
        time.sleep(1.5)
        _promote(world, v2)
        assert load.wait_for(lambda a: a.status == 200 and a.body["model"]["version"] == v2, 20), "never swapped"
        time.sleep(1.0)

        wrong = _wrong_features_version(world)
        _promote(world, wrong)
        corrupt = _corrupt_version(world, tmp_path)
        _promote(world, corrupt)
        deadline = time.monotonic() + 20
        while _metric(port, "slipstream_model_swaps_total", 'result="refused"') < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _metric(port, "slipstream_model_swaps_total", 'result="refused"') == 2
        time.sleep(0.5)
        assert _metric(port, "slipstream_model_info", f'version="{v2}"') == 1
        client = Client(port)
        status, ready = client.request("GET", "/readyz")
        client.close()
        assert status == 200 and ready["models"]["fraud"]["version"] == v2

    answers = load.all
    assert load.errors == []
    assert len(answers) > 1500  # ~500 req/s for several seconds
    assert [a for a in answers if a.status != 200] == []
    for per_thread in load.answers:  # each client sees v1, then v2, never back
        versions = [a.body["model"]["version"] for a in per_thread]
        first_v2 = versions.index(v2)
        assert set(versions[:first_v2]) == {v1} and set(versions[first_v2:]) == {v2}
    refused = [r for r in service.fraud_slot.history if not r.accepted]
    assert [r.version for r in refused] == [wrong, corrupt]
    assert "does not compute" in refused[0].reason and "amount" in refused[0].reason
    assert "sha256" in refused[1].reason or "checksum" in refused[1].reason
