"""Two workers per stage share the partitions, and a second worker joining mid-stream changes no feature: the first
hands its partitions over exactly (flush, commit, drop), the second restores their state from the changelog."""

from __future__ import annotations

import threading
import uuid

import pytest

from slipstream.schemas.contracts import Contracts
from slipstream.streams.engine.app import EngineJob, run_threads
from slipstream.streams.engine.runner import EngineSettings, StageStats
from tests.conftest import Services
from tests.fraud_reference import reference, small_fraud_streams
from tests.integration.engine.test_engine_on_kafka import _compare, _publish, feature_log, missing_report
from tests.integration.engine.test_engine_recovery import _committed, _log_size

pytestmark = pytest.mark.integration


def _settings(services: Services, project: str, worker: str | None, runtime: str) -> EngineSettings:
    return EngineSettings(
        services.bootstrap_servers, services.redis_url, project=project, worker_id=worker, runtime=runtime
    )


# Both membership kinds on the Kafka runtime; the Faust runtime with static members only (the join and hand-over it
# runs are the same either way, and each Faust case costs ~45 s of the suite).
@pytest.mark.parametrize(
    ("runtime", "static"),
    [("kafka", True), ("kafka", False), ("faust", True)],
    ids=["kafka-static-members", "kafka-dynamic-members", "faust-static-members"],
)
def test_a_worker_joining_mid_stream_changes_no_feature(
    services: Services, contracts: Contracts, static: bool, runtime: str
) -> None:
    tx, labels = small_fraud_streams(n_customers=400, n_terminals=400, days=45)
    total = len(tx) + len(labels)
    _publish(services, contracts, tx, labels)
    project = f"t{uuid.uuid4().hex[:8]}"
    prefix = contracts.catalog.prefix
    results: dict[str, dict[str, StageStats]] = {}
    errors: list[BaseException] = []
    busy = threading.Event()

    def worker(name: str) -> None:
        def seen(stage: str, stats: StageStats) -> None:
            if stats.consumed > total // 50:
                # The first worker is into the stream, far from its end: time for the second to join (the join takes
                # a heartbeat or two; the first reads the whole stream in ~4 s on an idle machine).
                busy.set()

        try:
            job = EngineJob(_settings(services, project, name if static else None, runtime), prefix, "fraud")
            results[name] = run_threads(job, threading.Event(), until_idle_s=5.0, on_batch=seen)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)
            busy.set()

    first = threading.Thread(target=worker, args=("a",))
    first.start()
    assert busy.wait(120), "the first worker made no progress"
    second = threading.Thread(target=worker, args=("b",))
    second.start()
    first.join(300)
    second.join(300)
    assert not errors, errors
    for stage in ("customer", "terminal"):
        assert results["a"][stage].consumed > 0 and results["b"][stage].consumed > 0  # both did a share
    assert results["a"]["customer"].consumed < total  # a handed partitions over mid-stream
    assert sum(results[w]["customer"].consumed for w in results) >= total  # at least once: a tail may be read twice

    # No stale commit of a partition handed over: every input is committed to its end, whoever closed last.
    group = f"{prefix}slipstream-engine-fraud-customer"
    for topic in ("transactions", "labels"):
        name = contracts.topic(topic)
        assert _committed(services, group, [name]) == _log_size(services, name), topic

    want = reference(tx, labels)
    got = feature_log(services, contracts, len(want), patience_s=60.0)  # a loaded machine's fetch may pause
    wrong = _compare(got, want)
    if len(got) != len(want) or wrong:
        workers = {
            w: {s: (x.consumed, x.applied, x.duplicates, x.dead_lettered) for s, x in r.items()}
            for w, r in results.items()
        }
        report = (
            f"{missing_report(got, tx, services, contracts)}; {wrong} wrong or missing values; "
            f"(consumed, applied, duplicates, dead) {workers}"
        )
        pytest.fail(report)
