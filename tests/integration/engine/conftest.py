"""The engine's contract runs on both runtimes: confluent-kafka's group member and a Faust app's agent."""

from __future__ import annotations

import pytest

from slipstream.streams.engine.settings import RUNTIMES


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    return str(request.param)
