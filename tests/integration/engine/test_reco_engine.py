"""The recommendation feature set online (user stage -> item stage) equals the offline engine."""

from __future__ import annotations

import threading
import uuid

import numpy as np
import pytest

from slipstream.features.definitions import RECO
from slipstream.features.offline import compute_offline
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.transport import EventProducer
from slipstream.streams.engine.app import EngineJob, run_threads
from slipstream.streams.engine.runner import EngineSettings
from slipstream.streams.publish import frame_records
from slipstream.streams.simulate.reco import RecoSimConfig, simulate_interactions
from tests.conftest import Services
from tests.integration.engine.test_engine_on_kafka import feature_log

pytestmark = pytest.mark.integration


def test_reco_vectors_equal_the_offline_engine(services: Services, contracts: Contracts) -> None:
    events = simulate_interactions(RecoSimConfig(n_users=150, n_items=300, n_categories=8, days=7)).events
    assert len(events) > 3000
    with EventProducer(services.bootstrap_servers, contracts, linger_ms=5) as producer:
        for record in frame_records(events):
            producer.send("interactions", record)
    settings = EngineSettings(services.bootstrap_servers, services.redis_url, project=f"t{uuid.uuid4().hex[:8]}")
    stats = run_threads(EngineJob(settings, contracts.catalog.prefix, "reco"), threading.Event(), until_idle_s=3)
    assert stats["user"].dead_lettered == 0

    online = feature_log(services, contracts, len(events))
    offline = compute_offline(RECO, {"interactions": events}).vectors
    assert len(online) == len(offline)
    names = [n for n in offline.columns if n not in ("event_id", "event_time", "user_id", "item_id", "category_id")]
    assert "USER_CAT_AFFINITY_24H" in names and "ITEM_CTR_1H" in names
    got = np.array([[online[str(i)][n] for n in names] for i in offline["event_id"]])
    assert np.abs(got - offline[names].to_numpy(dtype=float)).max() <= 1e-9
