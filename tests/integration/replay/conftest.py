"""One recorded production for the replay tests: the fraud world's live day scored by the real engine and Kafka
scorer (a promotion halfway, poison messages, labels), recorded once per session into a slice."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from slipstream.replay.pytest_plugin import PlatformPool
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.exceptions import SlipstreamError
from slipstream.schemas.topics import TopicCatalog
from slipstream.schemas.transport import TopicAdmin
from tests.conftest import Services
from tests.integration.replay.production import Production, record, run_production
from tests.integration.serving.fixtures import build_world


@dataclass(frozen=True)
class Recorded:
    production: Production
    path: Path
    manifest: dict[str, Any]


@pytest.fixture(scope="session")
def recorded_slice(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    base = Contracts.default()
    catalog = TopicCatalog(f"t-{uuid.uuid4().hex[:10]}.")
    contracts = Contracts(catalog, base.registry, base.framing)
    admin = TopicAdmin(services.bootstrap_servers)
    admin.apply(catalog)
    tmp = tmp_path_factory.mktemp("recorded")
    try:
        world = build_world(services, contracts, tmp)
        production = run_production(world)
        path = tmp / "window.slice"
        manifest = record(production, path)
        yield Recorded(production, path, manifest)
    finally:
        admin.delete(admin.matching(catalog.prefix))
        with contextlib.suppress(SlipstreamError):
            admin.delete_groups(admin.groups(catalog.prefix), patience_s=0)


@pytest.fixture(scope="package")
def slipstream_platforms() -> Iterator[PlatformPool]:
    """The plugin's pool of throwaway platforms, closed when this package's tests end. The plugin keeps it for the
    session, as a user's suite wants; here its containers (a Kafka JVM among them) idled through the rest of ours."""
    pool = PlatformPool()
    try:
        yield pool
    finally:
        pool.close()
