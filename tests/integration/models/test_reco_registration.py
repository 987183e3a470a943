"""The reco ranker as a first-class model, on a real MLflow (tmp sqlite) and the real broker: trained by the protocol
(:func:`fit_reco`), registered by the one function the CLI and the demo share (:func:`register_reco`) behind the ONNX
parity gate, promoted to champion; loaded back, it is a ``ranking`` model whose ONNX scores equal LightGBM's on the
held-out users' candidates. `slipstream train reco` goes through the same two calls."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from slipstream.models.dataset import data_hash
from slipstream.models.publish import reco_metrics, register_reco
from slipstream.models.reco import FEATURES, RecoFit, fit_reco, predict_scores
from slipstream.models.registry import CHAMPION, ModelRegistry, default_tracking_uri
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.transport import EventConsumer, EventProducer
from slipstream.streams.simulate.reco import RecoSimConfig, simulate_interactions
from tests.conftest import Services

pytestmark = pytest.mark.integration
SMALL = RecoSimConfig(n_users=300, n_items=800, n_categories=8, days=23, seed=5)
SCORE_TOL = 1e-5  # the ONNX ranker's output is float32


@pytest.fixture(scope="module")
def fit() -> RecoFit:
    return fit_reco(simulate_interactions(SMALL), seed=3, params={"n_estimators": 40})


def _model_events(services: Services, contracts: Contracts, n: int) -> list[dict[str, object]]:
    events: list[dict[str, object]] = []
    with EventConsumer(services.bootstrap_servers, contracts, ["model-events"]) as consumer:
        for _ in range(60):
            events += [e.value for e in consumer.poll_batch(timeout=1.0).events]
            if len(events) >= n:
                break
    return events


def test_fit_keeps_what_the_protocol_made(fit: RecoFit) -> None:
    report = fit.report
    assert report["train_rows"] == len(fit.train) > 0
    assert report["users"] == fit.test["user_id"].nunique() > 0
    assert (fit.test["cutoff"] == fit.cutoff).all()
    np.testing.assert_array_equal(fit.test["score"].to_numpy(), predict_scores(fit.model, fit.test))
    assert set(fit.test["user_id"]) <= set(fit.truth["user_id"])  # every held-out user has a future
    assert fit.data_window == ("2024-01-01", "2024-01-23")
    assert reco_metrics(report) == {
        "ndcg_at_10": report["ndcg_at_10"],
        "recall_at_10": report["recall_at_10"],
        "popularity_ndcg_at_10": report["popularity"]["ndcg_at_10"],
        "popularity_recall_at_10": report["popularity"]["recall_at_10"],
    }


def test_registered_promoted_and_served_scores_equal_lightgbm(
    fit: RecoFit, services: Services, contracts: Contracts, tmp_path: Path
) -> None:
    registry = ModelRegistry(default_tracking_uri(tmp_path), tmp_path / "mlruns")
    with EventProducer(services.bootstrap_servers, contracts) as producer:
        registered, metrics = register_reco(registry, "reco", fit, producer=producer)
        registry.promote("reco", registered.version, producer=producer)
    assert registered.parity.passed and registered.parity.max_abs_diff <= SCORE_TOL
    assert registered.parity.n == len(fit.train[:: max(1, len(fit.train) // 20_000)])
    events = _model_events(services, contracts, 2)
    assert [(e["action"], e["model_name"], e["version"]) for e in events] == [
        ("REGISTERED", "reco", registered.version),
        ("PROMOTED", "reco", registered.version),
    ]
    assert registry.alias_version("reco", CHAMPION) == registered.version

    loaded = registry.load("reco", expected_features=FEATURES)  # the champion, checksum and features verified
    card = loaded.card
    assert (loaded.kind, card["kind"], loaded.threshold, loaded.scorer.output) == (
        "ranking",
        "ranking",
        0.0,
        "raw_score",
    )
    assert card["features"] == list(FEATURES)
    assert card["metrics"] == metrics == reco_metrics(fit.report)
    assert card["data_window"] == list(fit.data_window)
    assert card["data_hash"] == data_hash(fit.train)
    assert loaded.check_parity().passed

    # parity where it matters: the held-out users' candidates, as the ranker will see them live
    x = fit.test[list(FEATURES)].to_numpy(dtype=np.float64)
    onnx_scores = loaded.scorer.predict(x)
    lightgbm_scores = fit.test["score"].to_numpy()
    assert len(x) > 5_000
    np.testing.assert_allclose(onnx_scores, lightgbm_scores, rtol=0, atol=SCORE_TOL)
    top = fit.test.assign(onnx=onnx_scores).groupby("user_id")
    agree = [
        np.array_equal(g.nlargest(10, "onnx").index, g.nlargest(10, "score").index) for _, g in top
    ]  # near-ties (float32) may swap neighbours; nearly every user's top 10 is the same
    assert np.mean(agree) >= 0.95


def test_train_reco_command_registers_and_promotes(
    services: Services, contracts: Contracts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`slipstream train reco` (the default simulation): champion when there is none, a challenger after that."""
    from slipstream.cli import app as cli

    for name, value in {
        "KAFKA_BOOTSTRAP_SERVERS": services.bootstrap_servers,
        "SLIPSTREAM_STATE_DIR": str(tmp_path / "state"),
        "SLIPSTREAM_TOPIC_PREFIX": contracts.catalog.prefix,
    }.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli, ["train", "reco"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "reco v1 registered as champion" in result.output
    assert "popularity_ndcg_at_10" in result.output
    actions = [(e["action"], e["model_name"], e["version"]) for e in _model_events(services, contracts, 2)]
    assert actions == [("REGISTERED", "reco", "1"), ("PROMOTED", "reco", "1")]
    state = tmp_path / "state"
    assert ModelRegistry(default_tracking_uri(state), state / "mlruns").load("reco").kind == "ranking"
