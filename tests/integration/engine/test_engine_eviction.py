"""Bounded state, restore and dead letters on the real broker and Redis.

- Entities that go quiet past their longest window are evicted: tombstones in both stages' changelogs, the empty
  state in Redis; a restarted engine restores from those changelogs and the entities that come back get exactly the
  reference features.
- A restore runs outside the rebalance callback: the callback returns at once, and the state is read a slice per
  step while the group is polled.
- Rows Redis's layout refuses and undecodable messages on the internal repartition topic are dead-lettered with the
  reason; the engine goes on, and every other feature is exact.
- A stage that dies stops a threaded run too (``run_processes`` is covered in test_engine_workers.py).
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
import redis
from confluent_kafka import Consumer, Producer, TopicPartition

from slipstream.features.base import Agg, Aggregate, Entity, FeatureSet, FeatureView, SourceSpec, Window
from slipstream.features.feast_repo import view_layouts
from slipstream.features.windows import EntityState
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.topics import TopicCatalog
from slipstream.schemas.transport import EventConsumer, TopicAdmin
from slipstream.streams.engine.app import EngineJob, run_threads
from slipstream.streams.engine.exceptions import TopologyError
from slipstream.streams.engine.internal import state_key_parts
from slipstream.streams.engine.runner import EngineSettings, StageRunner
from slipstream.streams.engine.topology import topology_for
from tests.conftest import Services
from tests.fraud_reference import reference
from tests.integration.engine.test_engine_on_kafka import _compare, _publish, feature_log
from tests.unit.engine.test_eviction import DAY_US

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gappy() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from tests.fraud_reference import small_fraud_streams

    tx, labels = small_fraud_streams(n_customers=40, n_terminals=80, days=100)
    start = tx[0]["event_time"]

    def quiet(r: dict[str, Any]) -> bool:
        day = (r["event_time"] - start) // DAY_US
        return bool(r["customer_id"] % 3 == 0 and 10 <= day < 55) or bool(r["terminal_id"] % 4 == 0 and 10 <= day < 65)

    dropped = {r["transaction_id"] for r in tx if quiet(r)}
    return [r for r in tx if r["transaction_id"] not in dropped], [
        r for r in labels if r["transaction_id"] not in dropped
    ]


def _settings(services: Services, project: str, **extra: Any) -> EngineSettings:
    return EngineSettings(services.bootstrap_servers, services.redis_url, project=project, **extra)


def _changelog(services: Services, topic: str) -> dict[bytes, bytes | None]:
    """The newest value per key of a changelog (``None``: a tombstone), as a restore reads it."""
    consumer = Consumer(
        {
            "bootstrap.servers": services.bootstrap_servers,
            "group.id": f"probe-{uuid.uuid4().hex}",
            "enable.partition.eof": True,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        latest: dict[bytes, bytes | None] = {}
        ends = set(partitions)
        while ends:
            for msg in consumer.consume(5000, 1.0):
                if msg.error() is not None:
                    ends.discard(msg.partition())
                    continue
                latest[msg.key() or b""] = msg.value()
        return latest
    finally:
        consumer.close()


def test_quiet_entities_are_tombstoned_and_come_back_exact_after_a_restore(
    services: Services, contracts: Contracts, gappy: Any
) -> None:
    tx, labels = gappy
    split = tx[0]["event_time"] + 62 * DAY_US  # customers were evicted and came back; terminals are evicted, not back
    project = f"t{uuid.uuid4().hex[:8]}"
    job = EngineJob(_settings(services, project), contracts.catalog.prefix, "fraud")
    _publish(
        services, contracts, [r for r in tx if r["event_time"] < split], [r for r in labels if r["event_time"] < split]
    )
    first = run_threads(job, threading.Event(), until_idle_s=3)
    assert first["customer"].evicted > 0 and first["terminal"].evicted > 0

    prefix = contracts.catalog.prefix
    tombstoned = {}
    for stage in ("customer", "terminal"):
        log = _changelog(services, f"{prefix}engine.fraud.{stage}.changelog")
        tombstoned[stage] = [key for key, value in log.items() if value is None]
        assert tombstoned[stage], stage
    # An evicted terminal not back yet: Redis holds the empty state for it (no event any window can still reach).
    layout = view_layouts([topology_for("fraud").feature_set], project)["terminal_risk"]
    view, keys = state_key_parts(tombstoned["terminal"][0])
    client = redis.Redis.from_url(services.redis_url)
    try:
        blob = client.hget(layout.key({"terminal_id": keys[0]}), layout.state_field)
    finally:
        client.close()
    assert view == "terminal_risk" and blob == EntityState().to_bytes()

    _publish(
        services,
        contracts,
        [r for r in tx if r["event_time"] >= split],
        [r for r in labels if r["event_time"] >= split],
    )
    second = run_threads(job, threading.Event(), until_idle_s=3)
    assert second["terminal"].restored_keys > 0
    want = reference(tx, labels)
    got = feature_log(services, contracts, len(want))
    assert len(got) == len(want)
    assert _compare(got, want) == 0


def test_a_restore_runs_outside_the_rebalance_callback(services: Services, contracts: Contracts) -> None:
    """30,000 states in the changelog (partitioned as the stage's input), read 5 ms a slice: the callback returns
    in well under a second, the restore takes many steps of the poll loop, and every state is back."""
    topology = topology_for("fraud")
    runner = StageRunner(
        _settings(services, f"t{uuid.uuid4().hex[:8]}", restore_slice_s=0.005),
        contracts,
        topology,
        topology.stage("customer"),
    )
    changelog = contracts.catalog.prefix + "engine.fraud.customer.changelog"
    TopicAdmin(services.bootstrap_servers).apply(TopicCatalog(contracts.catalog.prefix, topology.topics()))
    state = EntityState()
    state.apply(
        topology.stage("customer").views[0].source("transactions"),
        {"transaction_id": 1, "event_time": 10**15, "customer_id": 1, "terminal_id": 2, "amount": 3.0},
        0,
        0,
    )
    producer = Producer({"bootstrap.servers": services.bootstrap_servers, "linger.ms": 20})
    n = 30_000
    parts = len(producer.list_topics(changelog, timeout=10).topics[changelog].partitions)
    for i in range(n):
        producer.produce(changelog, state.to_bytes(), f'["customer_spending",{i}]'.encode(), partition=i % parts)
        if i % 5000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0
    callback_s: list[float] = []
    original = runner._on_assign

    def timed(consumer: Any, partitions: Any) -> None:
        started = time.perf_counter()
        original(consumer, partitions)
        callback_s.append(time.perf_counter() - started)

    runner._on_assign = timed  # type: ignore[method-assign]  # a stopwatch around the real callback
    steps_while_restoring = 0
    try:
        runner._consumer.subscribe(list(runner._inputs), on_assign=runner._on_assign, on_revoke=runner._on_revoke)
        deadline = time.monotonic() + 90
        while len(runner._owned) < parts and time.monotonic() < deadline:
            runner.step()
            if runner._restoring.partitions:
                steps_while_restoring += 1
        owned, held = set(runner._owned), len(runner.processor.states)
    finally:
        runner.close()
    assert callback_s and max(callback_s) < 1.0, callback_s
    assert owned == set(range(parts))
    assert steps_while_restoring > 3
    assert runner.stats.restored_keys == n
    assert held == n


def _dead_letters(services: Services, contracts: Contracts, expected: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with EventConsumer(services.bootstrap_servers, contracts, ["dead-letter"]) as consumer:
        deadline = time.monotonic() + 30
        while len(out) < expected and time.monotonic() < deadline:
            out += [e.value for e in consumer.poll_batch(max_records=1000, timeout=0.5).events]
    return out


SMALL_CARD = Entity("card", ("customer_id",), ("int32",))
TX = SourceSpec("transactions", time_field="event_time", id_field="transaction_id", fields=("amount", "terminal_id"))
INT32_SET = FeatureSet(
    name="int32cards",
    trigger="transactions",
    request=(),
    views=(
        FeatureView(
            "card_count",
            SMALL_CARD,
            (TX,),
            (Aggregate("CARD_NB_TX_1D", "transactions", Agg.COUNT, Window(timedelta(days=1))),),
        ),
    ),
)


def test_rows_redis_refuses_are_dead_lettered_with_the_reason(services: Services, contracts: Contracts) -> None:
    """Card ids past int32 cannot be Feast keys of an int32 entity: those rows are refused, their events
    dead-lettered; the vectors and the other cards' rows are written."""
    base = 1_700_000_000_000_000
    tx = [
        {"transaction_id": i, "event_time": base + i * 1_000_000, "customer_id": c, "terminal_id": 1, "amount": 1.0}
        for i, c in enumerate([1, 2, 2**31 + 5, 1, 2**31 + 5])
    ]
    _publish(services, contracts, tx, [])
    job = EngineJob(_settings(services, f"t{uuid.uuid4().hex[:8]}"), contracts.catalog.prefix, INT32_SET)
    stats = run_threads(job, threading.Event(), until_idle_s=3)
    assert stats["card"].rows_rejected == 2
    letters = _dead_letters(services, contracts, 2)
    assert len(letters) == 2
    assert {letter["error_type"] for letter in letters} == {"invalid_value"}
    assert all("not a valid int32 entity value" in letter["reason"].lower() for letter in letters)
    assert all("card_count row" in letter["reason"] for letter in letters)
    got = feature_log(services, contracts, len(tx))
    assert got["4"]["CARD_NB_TX_1D"] == 2.0  # the vector is computed whatever Redis refused


def test_undecodable_internal_messages_are_dead_lettered(services: Services, contracts: Contracts, gappy: Any) -> None:
    tx, labels = gappy
    tx, labels = tx[:600], [r for r in labels if r["transaction_id"] < 600][:300]
    prefix = contracts.catalog.prefix
    topology = topology_for("fraud")
    TopicAdmin(services.bootstrap_servers).apply(TopicCatalog(prefix, topology.topics()))
    internal = prefix + "engine.fraud.by-terminal"
    producer = Producer({"bootstrap.servers": services.bootstrap_servers})
    producer.produce(internal, b"\x00not json", b"1", partition=0)
    producer.produce(
        internal, b'{"src": "transactions", "rec": {"terminal_id": 1}, "feat": {}, "nt": 1}', b"1", partition=1
    )
    producer.produce(internal, b"[1, 2]", b"1", partition=2)
    assert producer.flush(10) == 0
    _publish(services, contracts, tx, labels)
    job = EngineJob(_settings(services, f"t{uuid.uuid4().hex[:8]}"), prefix, "fraud")
    stats = run_threads(job, threading.Event(), until_idle_s=3)
    assert stats["terminal"].dead_lettered == 3
    letters = _dead_letters(services, contracts, 3)
    by_type = sorted(letter["error_type"] for letter in letters)
    assert by_type == ["schema_mismatch", "undecodable", "undecodable"]
    assert any("lacks fields" in letter["reason"] for letter in letters)
    want = reference(tx, labels)
    assert _compare(feature_log(services, contracts, len(want)), want) == 0


def test_a_stage_that_dies_stops_a_threaded_run(services: Services, contracts: Contracts) -> None:
    """One worker fails (here: a stage the set does not have); the other, with no idle stop, is stopped, and the
    error is raised — never a half pipeline left running."""
    job = EngineJob(
        _settings(services, f"t{uuid.uuid4().hex[:8]}"), contracts.catalog.prefix, "fraud", ("customer", "nope")
    )
    started = time.monotonic()
    with pytest.raises(TopologyError, match="no stage 'nope'"):
        run_threads(job, threading.Event())
    assert time.monotonic() - started < 60
