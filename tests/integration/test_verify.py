"""`slipstream features verify` end to end on a small simulated log: the feature log and the online store (read
through Feast's SDK) equal the offline engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from slipstream.app import Slipstream
from slipstream.cli.simulate import simulate_fraud_file
from slipstream.settings import load_settings
from slipstream.verify import VerifyConfig, verify
from tests.conftest import Services

pytestmark = pytest.mark.integration


def test_verify_reports_zero_mismatches(services: Services, tmp_path: Path) -> None:
    events = tmp_path / "fraud.parquet"
    simulate_fraud_file(events, customers=150, terminals=300, days=25, show_progress=False)
    settings = load_settings(
        kafka_bootstrap_servers=services.bootstrap_servers,
        redis_url=services.redis_url,
        feast_repo_dir=tmp_path / "feast",
        offline_dir=tmp_path / "offline",
    )
    said: list[str] = []
    report = verify(Slipstream(settings), VerifyConfig(events, days=20), said.append)
    assert report["transactions"] > 2000
    assert report["labels"] > 0
    assert report["compared"] == report["transactions"]
    assert report["missing_vectors"] == 0
    assert report["mismatches"] == 0, report["mismatches_by_feature"]
    assert report["max_abs_diff"] <= 1e-9
    assert report["online_entities_compared"] > 300
    assert report["online_mismatches"] == 0
    assert any("publishing" in line for line in said)
