"""The monitoring processors' exactness contract runs on both runtimes: confluent-kafka's transactional group member
and a Faust app with an aiokafka transactional producer (``slipstream.monitoring.hosts``)."""

from __future__ import annotations

import pytest

from slipstream.streams.engine.settings import RUNTIMES


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    return str(request.param)
