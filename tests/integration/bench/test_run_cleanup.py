"""A benchmark run's clean-up removes what the run created on the real broker and Redis, and nothing else."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import redis
from confluent_kafka.admin import AdminClient

from slipstream.app import Slipstream
from slipstream.bench.world import remove_run, run_settings
from slipstream.features.definitions import FRAUD
from slipstream.features.feast_repo import view_layouts
from slipstream.settings import load_settings
from tests.conftest import Services

pytestmark = pytest.mark.integration


def _topics(bootstrap: str) -> set[str]:
    return set(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics)


def test_remove_run_deletes_the_runs_topics_keys_and_directory(services: Services, tmp_path: Path) -> None:
    settings = load_settings(
        kafka_bootstrap_servers=services.bootstrap_servers,
        redis_url=services.redis_url,
        state_dir=tmp_path / "state",
        topic_prefix=f"t{uuid.uuid4().hex[:6]}.",
    )
    base = Slipstream(settings)
    tag = f"bench-cleanup-{uuid.uuid4().hex[:6]}"
    run = run_settings(base, tag)
    run.apply_topics()
    neighbour = run_settings(base, f"{tag}-other")  # another run's topics must survive
    neighbour.apply_topics()
    created = set(run.contracts.catalog.full_names())
    assert created <= _topics(services.bootstrap_servers)
    client = redis.Redis.from_url(services.redis_url)
    key = view_layouts([FRAUD], run.settings.feast_project)["customer_spending"].key({"customer_id": 7})
    client.hset(key, "x", b"1")
    run_dir = settings.state_dir / "bench" / tag
    run_dir.mkdir(parents=True)

    remove_run(run, tag, lambda _: None)

    left = _topics(services.bootstrap_servers)
    assert not created & left, sorted(created & left)
    assert set(neighbour.contracts.catalog.full_names()) <= left
    assert client.exists(key) == 0
    assert not run_dir.exists()
    remove_run(neighbour, f"{tag}-other", lambda _: None)
