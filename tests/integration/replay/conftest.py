from __future__ import annotations

from pathlib import Path

import pytest

from slipstream.schemas.contracts import Contracts
from tests.conftest import Services
from tests.integration.serving.fixtures import FraudWorld, build_world


@pytest.fixture
def world(services: Services, contracts: Contracts, tmp_path: Path) -> FraudWorld:
    """History in the online store, two registered fraud models (the first promoted), a composition root."""
    return build_world(services, contracts, tmp_path)
