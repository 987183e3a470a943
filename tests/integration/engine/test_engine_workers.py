"""`features run --workers N`: N processes per stage share its partitions and give the exact features; a worker that
dies stops the run with its name, and no worker is left running."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
import uuid

import pytest
from confluent_kafka.admin import AdminClient

from slipstream.schemas.contracts import Contracts
from slipstream.schemas.transport.admin import members_holding_partitions
from slipstream.streams.engine.app import EngineJob, run_processes
from slipstream.streams.engine.exceptions import EngineError
from slipstream.streams.engine.runner import EngineSettings
from tests.conftest import Services
from tests.fraud_reference import reference, small_fraud_streams
from tests.integration.engine.test_engine_on_kafka import _compare, _publish, feature_log, missing_report

pytestmark = pytest.mark.integration


def _job(services: Services, contracts: Contracts, workers: int, runtime: str = "kafka") -> EngineJob:
    project = f"t{uuid.uuid4().hex[:8]}"
    settings = EngineSettings(services.bootstrap_servers, services.redis_url, project=project, runtime=runtime)
    return EngineJob(settings, contracts.catalog.prefix, "fraud", workers=workers)


def test_two_workers_per_stage_share_it_and_agree_with_the_reference(
    services: Services, contracts: Contracts, runtime: str
) -> None:
    tx, labels = small_fraud_streams(n_customers=200, n_terminals=300, days=40)
    _publish(services, contracts, tx, labels)
    job = _job(services, contracts, workers=2, runtime=runtime)
    group = f"{contracts.catalog.prefix}slipstream-engine-fraud-customer"
    admin = AdminClient({"bootstrap.servers": services.bootstrap_servers})
    most = [0]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            most[0] = max(most[0], members_holding_partitions(admin, group))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        stats = run_processes(job, threading.Event(), until_idle_s=6.0)
    finally:
        done.set()
        watcher.join(10)
    assert most[0] == 2  # both workers of the stage held partitions at once
    assert stats["customer"].consumed >= len(tx) + len(labels)
    want = reference(tx, labels)
    got = feature_log(services, contracts, len(want), patience_s=60.0)  # a loaded machine's fetch may pause
    assert len(got) == len(want), missing_report(got, tx, services, contracts)
    assert _compare(got, want) == 0


def test_a_worker_that_dies_stops_the_run_naming_it(services: Services, contracts: Contracts) -> None:
    job = _job(services, contracts, workers=2)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            run_processes(job, threading.Event())  # no idle stop: only the death can end it
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    runner = threading.Thread(target=run)
    runner.start()
    deadline = time.monotonic() + 60
    victim = None
    while victim is None and time.monotonic() < deadline:
        victim = next((p for p in mp.active_children() if p.name == "engine-terminal-1" and p.pid), None)
        time.sleep(0.1)
    assert victim is not None and victim.pid is not None, [p.name for p in mp.active_children()]
    time.sleep(3)  # let it join its group and start reading
    os.kill(victim.pid, signal.SIGKILL)
    runner.join(120)
    assert not runner.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], EngineError)
    assert "['terminal#1'] exited with an error" in str(errors[0])
    assert "-9" in str(errors[0])
    assert not [p for p in mp.active_children() if p.name.startswith("engine-")]  # the others were stopped
