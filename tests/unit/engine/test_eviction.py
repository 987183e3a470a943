"""Bounded state: entities idle past every window are evicted, and no feature changes for it.

The two fraud stages are wired by hand (no broker) over a stream where a third of the customers and a quarter of the
terminals go quiet for longer than their longest window (+ delay) and then come back. The engine that evicts must
give every vector and every online-store row exactly as the engine that never evicts (and the sequential replay of
the pure core); every evicted event must lie outside the window of every output computed after its eviction; and
the changelog (states and tombstones) must restore exactly the states the engine holds.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from slipstream.features.windows import EntityState
from slipstream.streams.engine.eviction import HOUR_US, IdleIndex, evictable
from slipstream.streams.engine.internal import decode_internal, state_key_parts
from slipstream.streams.engine.processor import StageOutput, StageProcessor
from slipstream.streams.engine.topology import topology_for
from tests.fraud_reference import reference, small_fraud_streams

PARTITIONS = 3
NOW = datetime(2026, 1, 1, tzinfo=UTC)
DAY_US = 86_400_000_000
REACH = {"customer_spending": 30 * DAY_US, "terminal_risk": 37 * DAY_US}


def _partition(key: int) -> int:
    return key % PARTITIONS


@pytest.fixture(scope="module")
def gappy() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """100 days; customers ``id % 3 == 0`` are quiet on days 10-55, terminals ``id % 4 == 0`` on days 10-65 (their
    labels keep coming for a week after): longer than the 30-day and 37-day reaches, so they are evicted."""
    tx, labels = small_fraud_streams(days=100)
    start = tx[0]["event_time"]

    def quiet(r: dict[str, Any]) -> bool:
        day = (r["event_time"] - start) // DAY_US
        return bool(r["customer_id"] % 3 == 0 and 10 <= day < 55) or (r["terminal_id"] % 4 == 0 and 10 <= day < 65)

    dropped = {r["transaction_id"] for r in tx if quiet(r)}
    return [r for r in tx if r["transaction_id"] not in dropped], [
        r for r in labels if r["transaction_id"] not in dropped
    ]


@dataclass
class Run:
    vectors: dict[str, dict[str, float]] = field(default_factory=dict)
    rows: list[tuple[str, tuple[Any, ...], int, tuple[tuple[str, Any], ...]]] = field(default_factory=list)
    changelog: dict[str, dict[tuple[int, bytes], bytes | None]] = field(
        default_factory=lambda: {"customer": {}, "terminal": {}}
    )
    evictions: list[tuple[str, tuple[Any, ...], int, int]] = field(default_factory=list)  # view, keys, bound, batch
    returned: int = 0
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (customer, terminal) states held after each batch
    stages: dict[str, StageProcessor] = field(default_factory=dict)


def _record(run: Run, stage: str, proc: StageProcessor, before: dict[bytes, EntityState], out: StageOutput) -> None:
    log = run.changelog[stage]
    for partition, key, value in out.changelog:
        if (partition, key) in log and log[(partition, key)] is None:
            run.returned += 1
        log[(partition, key)] = value
    for row in out.rows:  # computed in this drain before its evictions
        event_us = (row.event_time - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
        run.rows.append((row.view, tuple(row.join_keys.values()), event_us, tuple(sorted(row.values.items()))))
    for partition, key, view, keys in out.evicted:
        log[(partition, key)] = None
        bound = before[key].last_us() + REACH[view]  # no window of an output at or after this reaches the entity
        run.evictions.append((view, keys, bound, len(run.rows)))
    assert not proc.pending() or stage == "terminal"


def run_engine(
    tx: list[dict[str, Any]],
    labels: list[dict[str, Any]],
    *,
    bucket_us: int | None,
    lateness_s: float = 0.0,
    chunk: int = 97,
    restart_customer_at: int | None = None,
) -> Run:
    """Transactions and labels interleaved by the time each becomes known, as producers would write them."""
    topology = topology_for("fraud")
    lateness = int(lateness_s * 1e6)

    def stage(name: str) -> StageProcessor:
        return StageProcessor(topology, topology.stage(name), lateness_us=lateness, evict_bucket_us=bucket_us)

    run = Run(stages={"customer": stage("customer"), "terminal": stage("terminal")})
    stream = sorted(
        [("transactions", r) for r in tx] + [("labels", r) for r in labels],
        key=lambda e: (e[1]["event_time"], e[0] == "transactions"),
    )
    remaining = {(t, p): 0 for t in ("transactions", "labels") for p in range(PARTITIONS)}
    for topic, record in stream:
        remaining[(topic, _partition(record["customer_id"]))] += 1

    def batches() -> Iterator[list[tuple[str, dict[str, Any]]]]:
        for i in range(0, len(stream), chunk):
            yield stream[i : i + chunk]

    everything = set(range(PARTITIONS))
    for n, batch in enumerate([*batches(), []]):
        if n == restart_customer_at:  # a crash after a commit: the new worker restores from the changelog
            fresh = stage("customer")
            for (partition, key), value in run.changelog["customer"].items():
                fresh.restore(partition, key, value)
            run.stages["customer"] = fresh
        customer, terminal = run.stages["customer"], run.stages["terminal"]
        for topic, record in batch:
            customer.on_event(_partition(record["customer_id"]), topic, dict(record))
        before = dict(customer.states)
        out1 = customer.drain(NOW)
        _record(run, "customer", customer, before, out1)
        customer.committed(everything)
        for topic, record in batch:
            remaining[(topic, _partition(record["customer_id"]))] -= 1
        marks = customer.markers({key: left == 0 for key, left in remaining.items()}, PARTITIONS)
        for key, value in out1.forwards:
            payload = decode_internal(value)
            part = _partition(int(key))
            terminal.on_event(part, payload["src"], payload["rec"], carried=payload["feat"], newest_us=payload["nt"])
        for part in range(PARTITIONS):
            for source, upstream, wm in marks:
                terminal.on_marker(part, source, upstream, PARTITIONS, wm)
        before = dict(terminal.states)
        out2 = terminal.drain(NOW)
        _record(run, "terminal", terminal, before, out2)
        terminal.committed({p for p in everything if not terminal.pending_refs(p)})
        for vector in out2.vectors:
            run.vectors[vector["event_id"]] = vector["features"]
        run.sizes.append((len(customer.states), len(terminal.states)))
    assert run.stages["terminal"].pending() == 0
    return run


@pytest.fixture(scope="module")
def never(gappy: Any) -> Run:
    return run_engine(*gappy, bucket_us=None)


@pytest.fixture(scope="module")
def evicting(gappy: Any) -> Run:
    return run_engine(*gappy, bucket_us=HOUR_US)


def test_eviction_changes_no_vector_and_no_row(gappy: Any, never: Run, evicting: Run) -> None:
    tx, labels = gappy
    views = {view for view, *_ in evicting.evictions}
    assert views == {"customer_spending", "terminal_risk"}  # both stages evicted
    assert evicting.returned > 20  # ... entities that then came back
    assert not never.evictions
    assert evicting.vectors == never.vectors
    assert evicting.rows == never.rows
    want = reference(tx, labels)
    assert set(evicting.vectors) == {str(k) for k in want}
    for tid, values in want.items():
        got = evicting.vectors[str(tid)]
        assert all(got[name] == pytest.approx(value, abs=1e-9) for name, value in values.items()), tid


def test_no_output_after_an_eviction_reaches_the_evicted_events(evicting: Run) -> None:
    """The claim behind the rule, checked directly: every output computed for an entity after its eviction is at or
    after its newest event plus the view's reach, so no window of it holds any evicted event."""
    checked = 0
    for view, keys, bound, at in evicting.evictions:
        for row_view, row_keys, event_us, _values in evicting.rows[at:]:
            if row_view == view and row_keys == keys:
                assert event_us >= bound
                checked += 1
    assert checked > 100


def test_memory_follows_the_live_entities(never: Run, evicting: Run) -> None:
    """While a third of the customers and a quarter of the terminals are quiet, the engine holds fewer states (at the
    end they are all back); at any time it holds what the compacted changelog holds."""
    for i, stage in enumerate(("customer", "terminal")):
        fewest = min(e[i] - n[i] for e, n in zip(evicting.sizes, never.sizes, strict=True))
        assert fewest <= -10
        live = sum(1 for value in evicting.changelog[stage].values() if value is not None)
        assert len(evicting.stages[stage].states) == live  # memory holds what the compacted changelog holds


def test_the_changelog_restores_exactly_the_states_held(evicting: Run) -> None:
    topology = topology_for("fraud")
    for stage in ("customer", "terminal"):
        fresh = StageProcessor(topology, topology.stage(stage))
        for (partition, key), value in evicting.changelog[stage].items():
            fresh.restore(partition, key, value)
        held = evicting.stages[stage].states
        assert {k: s.to_bytes() for k, s in fresh.states.items()} == {k: s.to_bytes() for k, s in held.items()}


def test_a_restart_after_evictions_changes_nothing(gappy: Any, never: Run) -> None:
    restarted = run_engine(*gappy, bucket_us=HOUR_US, restart_customer_at=80)
    assert restarted.evictions
    assert restarted.vectors == never.vectors
    assert sorted(restarted.rows) == sorted(never.rows)  # a new worker drains its partitions in another order


def test_late_events_within_the_lateness_around_evictions(gappy: Any) -> None:
    tx, labels = gappy
    rng = random.Random(11)
    shuffled = sorted(tx, key=lambda r: r["event_time"] + rng.uniform(0, 30e6))  # up to 30 s out of order
    with_eviction = run_engine(shuffled, labels, bucket_us=60_000_000, lateness_s=60)
    without = run_engine(shuffled, labels, bucket_us=None, lateness_s=60)
    assert with_eviction.evictions
    assert with_eviction.vectors == without.vectors
    assert with_eviction.rows == without.rows


# ------------------------------------------------------------------------------------------- the index alone
def test_the_rule_rounds_the_deadline_up_to_a_bucket() -> None:
    assert evictable(3_600, 3_600, bucket_us=3_600)
    assert not evictable(3_601, 3_601, bucket_us=3_600)  # rounded up to 7,200
    assert evictable(3_601, 7_200, bucket_us=3_600)
    assert not evictable(-5, -1, bucket_us=10)  # rounded up to 0


def test_the_index_returns_whole_expired_buckets_only() -> None:
    index = IdleIndex(bucket_us=10)
    index.file(0, b"a", 5)
    index.file(0, b"b", 12)
    index.file(1, b"c", 3)
    index.file(0, b"a", 25)  # a moved on: filed once, in its new bucket
    assert len(index) == 3
    assert index.expired(0, 19) == []  # b's bucket (11-20) has not wholly passed
    assert index.expired(0, 20) == [b"b"]
    assert index.expired(0, 100) == [b"a"]
    assert index.expired(0, 100) == []
    index.discard(b"c")
    assert index.expired(1, 100) == []
    assert len(index) == 0


def test_the_index_agrees_with_the_rule() -> None:
    rng = random.Random(3)
    index = IdleIndex(bucket_us=7)
    deadlines: dict[bytes, int] = {}
    horizon = 0
    for step in range(2_000):
        key = f"k{rng.randrange(200)}".encode()
        if key in deadlines or rng.random() < 0.5:
            deadlines[key] = horizon + rng.randrange(-3, 60)
            index.file(0, key, deadlines[key])
        if step % 10 == 0:
            horizon += rng.randrange(0, 9)
            gone = index.expired(0, horizon)
            assert gone == sorted(k for k, d in deadlines.items() if evictable(d, horizon, 7))
            for key in gone:
                del deadlines[key]


def test_forget_drops_a_partitions_keys() -> None:
    index = IdleIndex(bucket_us=10)
    index.file(0, b"a", 5)
    index.file(1, b"b", 5)
    index.forget({0})
    assert len(index) == 1
    assert index.expired(0, 100) == []
    assert index.expired(1, 100) == [b"b"]


def test_state_key_parts_round_trip() -> None:
    from slipstream.streams.engine.internal import state_key

    assert state_key_parts(state_key("terminal_risk", (7,))) == ("terminal_risk", (7,))
