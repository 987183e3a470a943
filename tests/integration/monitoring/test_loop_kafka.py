"""`slipstream loop` as a process on the real broker and a real MLflow: two drift alarms of the champion make it
retrain once; the retrain runs in a child process (here it finds no logged predictions to learn from and fails, which
the loop records); the decision and its end are `model-events` records with reason, evidence and stream time, the
evidence is filed on the version in MLflow; a restarted loop reads that history and decides nothing again; and
`--dry-run` decides the same and writes nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from slipstream.drill.gauges import GroupOffsets
from slipstream.features.definitions.fraud import FRAUD
from slipstream.models.cards import version_run_id
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.transport import EventProducer
from tests.conftest import Services
from tests.integration.monitoring.shadow_fixtures import committed, register, registry_at

pytestmark = pytest.mark.integration

DAY0 = datetime(2018, 8, 1, tzinfo=UTC)


def _alarm(i: int, version: str, end: datetime) -> dict[str, Any]:
    return {
        "alarm_id": f"fraud@{version}:FEATURE_DRIFT:TX_AMOUNT:{i}",
        "model_name": "fraud",
        "model_version": version,
        "kind": "FEATURE_DRIFT",
        "subject": "TX_AMOUNT",
        "statistic": "psi",
        "value": 0.4,
        "threshold": 0.05,
        "p_value": 1e-9,
        "nominal_false_alarm_rate": 0.001,
        "window_start": end - timedelta(days=1),
        "window_end": end,
        "n": 9000,
        "evidence": [],
        "raised_at": datetime.now(UTC),
    }


def _loop(services: Services, contracts: Contracts, state: Path, *args: str) -> subprocess.Popen[str]:
    env = os.environ | {
        "KAFKA_BOOTSTRAP_SERVERS": services.bootstrap_servers,
        "REDIS_URL": services.redis_url,
        "SLIPSTREAM_TOPIC_PREFIX": contracts.catalog.prefix,
        "SLIPSTREAM_STATE_DIR": str(state),
        "COLUMNS": "200",
    }
    cmd = [sys.executable, "-m", "slipstream", "loop", "--log-level", "warning", *args]
    env["PYTHONUNBUFFERED"] = "1"
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _events(services: Services, contracts: Contracts, wanted: set[str], timeout_s: float = 120) -> list[Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        events = committed(services.bootstrap_servers, contracts, "model-events", quiet_polls=2)
        if wanted <= {e["action"] for e in events} or time.monotonic() > deadline:
            return events
        time.sleep(1)


class Output:
    """A child's output, read on a thread, so a test can wait for a line."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc, self.lines = proc, []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_for(self, text: str, timeout_s: float = 120) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.proc.poll() is None:
            if any(text in line for line in self.lines):
                return True
            time.sleep(0.5)
        return any(text in line for line in self.lines)

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        self._thread.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return "".join(self.lines)


def test_the_loop_decides_once_records_why_and_a_restart_repeats_nothing(
    services: Services, contracts: Contracts, tmp_path: Path
) -> None:
    registry = registry_at(tmp_path)
    version = register(registry, FRAUD.model_input, seed=1)
    with EventProducer(services.bootstrap_servers, contracts) as producer:
        registry.promote("fraud", version, producer=producer)
        for i, hours in enumerate((0, 12)):
            producer.send("drift", _alarm(i, version, DAY0 + timedelta(hours=hours)))
        producer.flush()

    dry = Output(_loop(services, contracts, tmp_path, "--dry-run"))
    assert dry.wait_for("dry run: would RETRAIN"), dry.stop()
    dry.stop()
    assert [e["action"] for e in committed(services.bootstrap_servers, contracts, "model-events")] == ["PROMOTED"]

    loop = Output(_loop(services, contracts, tmp_path))
    events = _events(services, contracts, {"RETRAIN_STARTED", "RETRAIN_FAILED"})
    said = loop.stop()
    started = [e for e in events if e["action"] == "RETRAIN_STARTED"]
    failed = [e for e in events if e["action"] == "RETRAIN_FAILED"]
    assert len(started) == 1 and len(failed) == 1, (events, said)
    decision = started[0]
    assert decision["event_id"] == "fraud:retrain:1" and decision["actor"] == "slipstream loop"
    assert decision["stream_time"] == DAY0 + timedelta(hours=12)  # the loop's clock: event time, not the wall's
    assert "2 drift alarms" in decision["reason"]
    evidence = json.loads(decision["evidence"])
    assert evidence["code"] == "drift" and evidence["plan"]["retrain_id"] == "fraud:retrain:1"
    assert json.loads(failed[0]["evidence"])["retrain_id"] == "fraud:retrain:1"
    assert "nothing to learn from" in failed[0]["reason"] or "exited with code" in failed[0]["reason"]
    # the evidence beside the version in MLflow
    run_id = version_run_id(registry, "fraud", version)
    filed = registry.client.list_artifacts(run_id, "decisions")
    assert [Path(f.path).name for f in filed] == ["fraud_retrain_1.json"]
    tags = registry.client.get_model_version("fraud", version).tags
    assert "loop.RETRAIN_STARTED" in tags

    again = Output(_loop(services, contracts, tmp_path))
    assert again.wait_for("caught up"), again.stop()
    time.sleep(5)  # a decision would follow at once
    # how far the loop has read and decided is its progress group's offsets: all of it (a drain waits on this)
    offsets = GroupOffsets(services.bootstrap_servers)
    try:
        group = contracts.catalog.prefix + "slipstream-loop"
        lag = {t: offsets.lag(group, [contracts.topic(t)]) for t in ("model-events", "drift")}
        ends = {t: offsets.end(contracts.topic(t)) for t in ("model-events", "drift")}
    finally:
        offsets.close()
    assert lag == {"model-events": 0, "drift": 0} and ends["model-events"] >= 3 and ends["drift"] == 2, (lag, ends)
    said = again.stop()
    after = committed(services.bootstrap_servers, contracts, "model-events")
    assert [e["action"] for e in after] == [e["action"] for e in events], said
