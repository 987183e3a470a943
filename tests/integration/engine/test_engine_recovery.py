"""Crash and disorder: a worker killed with SIGKILL mid-stream and restarted, and transactions delivered out of
order within the allowed lateness, both end with exactly the reference features."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition

from slipstream.schemas.contracts import Contracts
from slipstream.streams.engine.app import EngineJob, run_threads
from slipstream.streams.engine.runner import EngineSettings
from tests.conftest import Services
from tests.fraud_reference import reference, small_fraud_streams
from tests.integration.engine.test_engine_on_kafka import _compare, _publish, feature_log

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def streams() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return small_fraud_streams(n_customers=50, n_terminals=100, days=50)


def _log_size(services: Services, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": services.bootstrap_servers, "group.id": "probe"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions)
    except KafkaException:  # the engine creates the topic when it starts: its leaders may still be elected
        return 0
    finally:
        consumer.close()


def _committed(services: Services, group: str, topics: list[str]) -> int:
    """Offsets a consumer group has committed, summed over every partition of ``topics``."""
    consumer = Consumer({"bootstrap.servers": services.bootstrap_servers, "group.id": group})
    try:
        wanted = [
            TopicPartition(topic, p)
            for topic in topics
            for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ]
        return sum(max(tp.offset, 0) for tp in consumer.committed(wanted, timeout=10))
    finally:
        consumer.close()


def _engine_process(
    services: Services, contracts: Contracts, project: str, log: Path, *extra: str
) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "KAFKA_BOOTSTRAP_SERVERS": services.bootstrap_servers,
        "REDIS_URL": services.redis_url,
        "SLIPSTREAM_TOPIC_PREFIX": contracts.catalog.prefix,
        "SLIPSTREAM_FEAST_PROJECT": project,
        "SLIPSTREAM_WORKER_ID": "0",  # static membership: the restarted worker takes its partitions back at once
    }
    command = [sys.executable, "-m", "slipstream", "features", "run", "--threads", "--quiet", *extra]
    with log.open("ab") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


def test_sigkill_mid_stream_then_restart_gives_exact_features(
    services: Services, contracts: Contracts, streams: Any, tmp_path: Path, runtime: str
) -> None:
    tx, labels = streams
    _publish(services, contracts, tx, labels)
    project = f"t{uuid.uuid4().hex[:8]}"

    log = tmp_path / "engine.log"
    forwards = contracts.catalog.prefix + "engine.fraud.by-terminal"  # created by the engine when it starts
    worker = _engine_process(services, contracts, project, log, "--runtime", runtime)
    try:
        deadline = time.monotonic() + 120
        # Kill once the first stage is a tenth of the way through its input: mid-stream for both stages.
        while _log_size(services, forwards) < (len(tx) + len(labels)) // 10:
            assert worker.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the engine made no progress"
            time.sleep(0.005)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
    consumed = _committed(
        services,
        f"{contracts.catalog.prefix}slipstream-engine-fraud-customer",
        [contracts.topic("transactions"), contracts.topic("labels")],
    )
    assert consumed < len(tx) + len(labels), "the kill came after the first stage had read everything"

    restarted = _engine_process(services, contracts, project, log, "--until-idle", "4", "--runtime", runtime)
    try:
        assert restarted.wait(timeout=300) == 0, log.read_text()[-3000:]
    finally:
        if restarted.poll() is None:  # never leave a worker behind, whatever failed
            restarted.kill()
            restarted.wait(timeout=30)

    want = reference(tx, labels)
    got = feature_log(services, contracts, len(want))
    assert len(got) == len(want)
    assert _compare(got, want) == 0


def test_out_of_order_within_lateness_gives_exact_features(
    services: Services, contracts: Contracts, streams: Any
) -> None:
    tx, labels = streams
    rng = random.Random(11)
    shuffled = sorted(tx, key=lambda r: r["event_time"] + rng.uniform(0, 6 * 3600e6))  # up to 6 h out of order
    moved = sum(a is not b for a, b in zip(tx, shuffled, strict=True))
    assert moved > len(tx) // 2
    _publish(services, contracts, shuffled, labels)
    settings = EngineSettings(
        services.bootstrap_servers, services.redis_url, project=f"t{uuid.uuid4().hex[:8]}", lateness_s=7 * 3600
    )
    stats = run_threads(EngineJob(settings, contracts.catalog.prefix, "fraud"), threading.Event(), until_idle_s=3)
    assert stats["customer"].dead_lettered == 0
    want = reference(tx, labels)
    assert _compare(feature_log(services, contracts, len(want)), want) == 0


def test_a_restarted_worker_refuses_as_late_what_a_running_one_would(
    services: Services, contracts: Contracts, runtime: str
) -> None:
    """The first stage's newest time per input partition is restored with its state (checkpointed with each
    commit): an event ten days behind what the stopped worker had read is late for the worker after it too. It used
    to start knowing nothing, take the event and send its vector on: a restart changed the features."""
    tx, labels = small_fraud_streams(n_customers=20, n_terminals=40, days=30)
    split = tx[len(tx) * 2 // 3]["event_time"]
    ten_days = 10 * 86_400_000_000
    stale_id = max(r["transaction_id"] for r in tx) + 1
    stale = dict(tx[0]) | {"transaction_id": stale_id, "event_time": split - ten_days}
    before = [r for r in tx if r["event_time"] < split]
    after = [r for r in tx if r["event_time"] >= split]
    settings = EngineSettings(
        services.bootstrap_servers, services.redis_url, project=f"t{uuid.uuid4().hex[:8]}", runtime=runtime
    )
    job = EngineJob(settings, contracts.catalog.prefix, "fraud")
    _publish(services, contracts, before, [r for r in labels if r["event_time"] < split])
    first = run_threads(job, threading.Event(), until_idle_s=3)
    assert first["customer"].dead_lettered == 0
    _publish(services, contracts, [stale, *after], [r for r in labels if r["event_time"] >= split])
    second = run_threads(job, threading.Event(), until_idle_s=3)
    assert second["customer"].restored_keys > 0
    assert second["customer"].dead_lettered == 1  # the stale event, as one worker reading everything refuses it
    want = reference(tx, labels)
    got = feature_log(services, contracts, len(want))
    assert str(stale_id) not in got
    assert len(got) == len(want)
    assert _compare(got, want) == 0
