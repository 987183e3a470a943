"""A stream that arrives while the engine runs gives the features of the sequential replay, on both runtimes.

The other contract tests publish the whole stream first: every input is read to its end only once, at the end. Here
it comes in slices the engine catches up with, so between slices every input partition is read to its end and the
first stage tells the next one so ("idle"). That must hold only while it is true: a transaction read after such a
moment waits again for the labels written before it.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest

from slipstream.schemas.contracts import Contracts
from slipstream.schemas.transport import EventProducer
from slipstream.streams.engine.app import EngineJob, run_threads
from slipstream.streams.engine.runner import EngineSettings, StageStats
from tests.conftest import Services
from tests.fraud_reference import reference, small_fraud_streams
from tests.integration.engine.test_engine_on_kafka import _compare, feature_log, missing_report

pytestmark = pytest.mark.integration

SLICE = 200


def by_time(tx: list[dict[str, Any]], labels: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Transactions and labels as producers write them: by the time each happens (a label when it is known)."""
    events = [("transactions", r) for r in tx] + [("labels", r) for r in labels]
    return sorted(events, key=lambda e: (e[1]["event_time"], e[0] == "transactions"))


def send_live(
    services: Services, contracts: Contracts, events: list[tuple[str, dict[str, Any]]], pause_s: float
) -> int:
    """In slices ``pause_s`` apart; in each, the labels are on the broker before the transactions (sends to different
    partitions are not ordered among themselves), so no label is written after a transaction it counts for. The
    number of slices."""
    slices = 0
    with EventProducer(services.bootstrap_servers, contracts, linger_ms=5) as producer:
        for i in range(0, len(events), SLICE):
            for wanted in ("labels", "transactions"):
                for topic, record in events[i : i + SLICE]:
                    if topic == wanted:
                        producer.send(topic, record)
                producer.flush(30)
            slices += 1
            time.sleep(pause_s)
    return slices


def test_a_stream_arriving_while_the_engine_runs_changes_no_feature(
    services: Services, contracts: Contracts, runtime: str
) -> None:
    tx, labels = small_fraud_streams(n_customers=60, n_terminals=80, days=40)
    project = f"t{uuid.uuid4().hex[:8]}"
    settings = EngineSettings(services.bootstrap_servers, services.redis_url, project=project, runtime=runtime)
    job = EngineJob(settings, contracts.catalog.prefix, "fraud")
    results: dict[str, dict[str, StageStats]] = {}
    errors: list[BaseException] = []
    ready = threading.Event()

    def engine() -> None:
        def seen(stage: str, stats: StageStats) -> None:
            ready.set()

        try:
            results["engine"] = run_threads(job, threading.Event(), until_idle_s=5.0, on_batch=seen)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            ready.set()

    worker = threading.Thread(target=engine)
    worker.start()
    assert ready.wait(120), "the engine never started"
    slices = send_live(services, contracts, by_time(tx, labels), pause_s=0.15)
    worker.join(300)
    assert not errors, errors
    assert slices > 20
    stats = results["engine"]
    assert stats["customer"].applied == len(tx)
    assert stats["terminal"].applied == len(tx) + len(labels)

    want = reference(tx, labels)
    got = feature_log(services, contracts, len(want), patience_s=30.0)
    wrong = _compare(got, want)
    assert len(got) == len(want) and wrong == 0, f"{missing_report(got, tx, services, contracts)}; {wrong} wrong"
