"""Redis stops under load: the scorer answers 503 with the reason, never a score; it recovers by itself when Redis
returns on the same address."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from slipstream.app import Slipstream
from slipstream.infra.config import PlatformConfig
from slipstream.infra.redis_local import LocalRedis
from slipstream.serving.http import create_app
from tests.integration.serving.fixtures import FraudWorld
from tests.integration.serving.http_server import Client, free_port, running
from tests.integration.serving.load import Load
from tests.integration.serving.test_fraud_scoring import _body

pytestmark = pytest.mark.integration


def test_redis_outage_gives_503_then_recovers(world: FraudWorld, tmp_path: Path) -> None:
    redis = LocalRedis(PlatformConfig(state_dir=tmp_path / "own-redis", backend="local", redis_port=free_port()))
    redis.up()
    try:
        settings = world.app.settings.model_copy(update={"redis_url": SecretStr(redis.config.redis_url)})
        app = Slipstream(settings)
        records = world.live_tx

        def body(n: int) -> dict[str, Any]:
            return _body(records[n % len(records)])

        service = app.scoring_service(contracts=world.contracts)
        with running(create_app(service)) as port, Load(port, body, 200, 2) as load:
            assert load.wait_for(lambda a: a.status == 200, 10)
            redis.down()
            assert load.wait_for(lambda a: a.status == 503, 10), "no 503 while Redis was down"
            client = Client(port)
            status, ready = client.request("GET", "/readyz")
            assert status == 503 and ready["redis"] is False
            time.sleep(1.0)
            down_until = time.monotonic()
            redis.up()
            assert load.wait_for(lambda a: a.status == 200 and a.at > down_until, 15), "never recovered"
            status, ready = client.request("GET", "/readyz")
            client.close()
            assert status == 200 and ready["redis"] is True
    finally:
        redis.down()

    answers = load.all
    assert load.errors == []
    assert {a.status for a in answers} == {200, 503}
    outage = [a for a in answers if a.status == 503]
    assert len(outage) > 50
    for answer in outage:
        assert answer.body["error"] == "features_unavailable"
        assert "Redis" in answer.body["detail"]
        assert "score" not in answer.body
    # after the first success once Redis is back, every answer is a score again
    back = next(i for i, a in enumerate(answers) if a.status == 200 and a.at > outage[-1].at)
    assert all(a.status == 200 for a in answers[back:])
