"""Faust's own command line runs the engine's stages: `faust -A slipstream.faust_stage worker`, one per stage, gives
the reference features, and a SIGTERM hands the partitions over (everything consumed is committed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from slipstream.schemas.contracts import Contracts
from tests.conftest import Services
from tests.fraud_reference import reference, small_fraud_streams
from tests.integration.engine.test_engine_on_kafka import _compare, _publish, feature_log
from tests.integration.engine.test_engine_recovery import _committed

pytestmark = pytest.mark.integration


def _worker(services: Services, contracts: Contracts, project: str, stage: str, log: Path) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "KAFKA_BOOTSTRAP_SERVERS": services.bootstrap_servers,
        "REDIS_URL": services.redis_url,
        "SLIPSTREAM_TOPIC_PREFIX": contracts.catalog.prefix,
        "SLIPSTREAM_FEAST_PROJECT": project,
        "SLIPSTREAM_ENGINE_STAGE": stage,
    }
    faust = str(Path(sys.executable).with_name("faust"))
    command = [faust, "-A", "slipstream.faust_stage", "worker", "--without-web", "-l", "warn"]
    with log.open("ab") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


def test_faust_workers_started_by_faust_give_the_reference_features(
    services: Services, contracts: Contracts, tmp_path: Path
) -> None:
    tx, labels = small_fraud_streams(n_customers=40, n_terminals=80, days=30)
    _publish(services, contracts, tx, labels)
    project = f"t{uuid.uuid4().hex[:8]}"
    workers: dict[str, Any] = {}
    try:
        for stage in ("customer", "terminal"):
            workers[stage] = _worker(services, contracts, project, stage, tmp_path / f"{stage}.log")
        want = reference(tx, labels)
        deadline = time.monotonic() + 180
        got: dict[str, dict[str, float]] = {}
        while len(got) < len(want) and time.monotonic() < deadline:
            for stage, proc in workers.items():
                assert proc.poll() is None, (tmp_path / f"{stage}.log").read_text()[-3000:]
            time.sleep(2)
            got = feature_log(services, contracts, len(want))
        assert len(got) == len(want)
        assert _compare(got, want) == 0
    finally:
        for proc in workers.values():
            proc.send_signal(signal.SIGTERM)
        codes = {stage: proc.wait(timeout=60) for stage, proc in workers.items()}
    assert codes == {"customer": 0, "terminal": 0}, [(tmp_path / f"{s}.log").read_text()[-2000:] for s in codes]
    inputs = [contracts.topic("transactions"), contracts.topic("labels")]
    group = f"{contracts.catalog.prefix}slipstream-engine-fraud-customer"
    assert _committed(services, group, inputs) == len(tx) + len(labels)  # handed over: all of it committed
