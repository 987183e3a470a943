"""The engine's two fraud stages, wired by hand (no broker): results equal a sequential replay of the pure core,
whatever the skew between labels and transactions, with duplicates, and with late events inside the lateness."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from slipstream.features.definitions.fraud import FRAUD
from slipstream.streams.engine.internal import decode_internal
from slipstream.streams.engine.processor import StageProcessor
from slipstream.streams.engine.topology import topology_for
from tests.fraud_reference import reference, small_fraud_streams

PARTITIONS = 3
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def streams() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return small_fraud_streams()


def _partition(key: int) -> int:
    return key % PARTITIONS


def run_pipeline(
    tx_order: list[dict[str, Any]], labels: list[dict[str, Any]], *, lateness_s: float = 0.0, chunk: int = 97
) -> tuple[dict[str, dict[str, float]], int]:
    """Stage 1 reads all transactions first, then all labels (days of skew); stage 2 reads what it forwards."""
    topology = topology_for("fraud")
    customer = StageProcessor(topology, topology.stage("customer"), lateness_us=int(lateness_s * 1e6))
    terminal = StageProcessor(topology, topology.stage("terminal"), lateness_us=int(lateness_s * 1e6))
    vectors: dict[str, dict[str, float]] = {}
    late = 0

    def batches() -> Iterator[list[tuple[str, dict[str, Any]]]]:
        stream = [("transactions", r) for r in tx_order] + [("labels", r) for r in labels]
        for i in range(0, len(stream), chunk):
            yield stream[i : i + chunk]

    remaining = {(t, p): 0 for t in ("transactions", "labels") for p in range(PARTITIONS)}
    for topic, records in (("transactions", tx_order), ("labels", labels)):
        for record in records:
            remaining[(topic, _partition(record["customer_id"]))] += 1
    for batch in [*batches(), []]:
        for topic, record in batch:
            customer.on_event(_partition(record["customer_id"]), topic, dict(record))
        out1 = customer.drain(NOW)
        late += len(out1.late)
        for topic, record in batch:
            remaining[(topic, _partition(record["customer_id"]))] -= 1
        # A (topic, partition) is idle once everything it will ever hold has been read, as with a caught-up consumer.
        marks = customer.markers({key: left == 0 for key, left in remaining.items()}, PARTITIONS)
        for key, value in out1.forwards:
            payload = decode_internal(value)
            part = _partition(int(key))
            terminal.on_event(part, payload["src"], payload["rec"], carried=payload["feat"], newest_us=payload["nt"])
        for part in range(PARTITIONS):
            for source, upstream, wm in marks:
                terminal.on_marker(part, source, upstream, PARTITIONS, wm)
        for vector in terminal.drain(NOW).vectors:
            vectors[vector["event_id"]] = vector["features"]
    assert terminal.pending() == 0
    return vectors, late


def _compare(got: dict[str, dict[str, float]], want: dict[int, dict[str, float]]) -> None:
    assert set(got) == {str(k) for k in want}
    for tid, values in want.items():
        for name, value in values.items():
            assert got[str(tid)][name] == pytest.approx(value, abs=1e-9), (tid, name)


def test_stages_equal_the_sequential_replay_despite_days_of_skew(streams: Any) -> None:
    tx, labels = streams
    vectors, late = run_pipeline(tx, labels)
    assert late == 0
    _compare(vectors, reference(tx, labels))
    assert set(next(iter(vectors.values()))) >= set(FRAUD.model_input)


def test_replayed_events_do_not_double_count(streams: Any) -> None:
    tx, labels = streams
    vectors, _ = run_pipeline(tx + tx[:500], labels + labels[:300])
    _compare(vectors, reference(tx, labels))


def test_late_events_within_the_lateness_are_corrected(streams: Any) -> None:
    tx, labels = streams
    rng = random.Random(7)
    shuffled = sorted(tx, key=lambda r: r["event_time"] + rng.uniform(0, 30e6))  # up to 30 s out of order
    vectors, late = run_pipeline(shuffled, labels, lateness_s=60)
    assert late == 0
    _compare(vectors, reference(tx, labels))


def test_events_later_than_the_lateness_are_refused(streams: Any) -> None:
    tx, _labels = streams
    head = [dict(r) for r in tx[:400]]
    newest = head[-1]
    three_hours = int(timedelta(hours=3) / timedelta(microseconds=1))
    stale = dict(tx[401]) | {"customer_id": newest["customer_id"], "event_time": newest["event_time"] - three_hours}
    vectors, late = run_pipeline([*head, stale], [], lateness_s=60)
    assert late == 1
    assert str(stale["transaction_id"]) not in vectors
    assert len(vectors) == len(head)


def test_an_idle_upstream_partition_that_gets_events_again_gates_again() -> None:
    """ "Idle" says nothing is waiting upstream now; once the partition has events again, outputs wait for its
    watermark again (it used to stay idle for ever, and transactions went out before labels that counted)."""
    topology = topology_for("fraud")
    terminal = StageProcessor(topology, topology.stage("terminal"))
    idle = 2**62
    for source in ("transactions", "labels"):
        for up in range(2):
            terminal.on_marker(0, source, up, 2, 1_000)
    assert terminal.frontier(0) == 1_000  # labels (counted when known) must reach the time itself
    for up in range(2):
        terminal.on_marker(0, "labels", up, 2, idle)
    day = 86_400_000_000
    assert terminal.frontier(0) == 1_000 + 7 * day  # only the transactions gate, a week behind (the windows' delay)
    terminal.on_marker(0, "labels", 1, 2, 2_000)  # a label again on upstream partition 1
    assert terminal.frontier(0) == 2_000
    terminal.on_marker(0, "labels", 1, 2, 1_500)  # watermarks never go back while the partition is active
    assert terminal.frontier(0) == 2_000


def test_a_later_stage_that_always_holds_a_waiting_output_still_releases_its_replay_floor() -> None:
    """On a live stream a later stage commits, every time, only up to its oldest output still waiting for a watermark;
    its replay floor must still move on with those commits, or it never prunes nor evicts."""
    topology = topology_for("fraud")
    terminal = StageProcessor(topology, topology.stage("terminal"))
    day = 86_400_000_000
    n = 2
    horizons = []
    for step in range(1, 40):
        t = step * day
        record = {
            "transaction_id": step,
            "event_time": t,
            "customer_id": 1,
            "terminal_id": 7,
            "amount": 10.0,
            "tx_fraud": 0,
        }
        terminal.on_event(0, "transactions", record, ref=("fwd", 0, step), position=("fwd", step))
        for source in ("transactions", "labels"):
            for up in range(n):
                terminal.on_marker(0, source, up, n, t - day // 2)  # the newest event always waits
        terminal.drain(datetime(2026, 1, 1, tzinfo=UTC))
        assert terminal.pending() == 1
        oldest_waiting = min(r[2] for r in terminal.pending_refs(0))
        terminal.committed_offsets({("fwd", 0): oldest_waiting})
        horizons.append(terminal.horizon(0))
    assert horizons[-1] is not None and horizons[-1] > 30 * day  # it follows the stream, not its first event
