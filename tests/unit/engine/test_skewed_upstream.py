"""An internal stage whose upstream partitions run at very different speeds computes the same features.

A worker restoring state, a paused partition or a fetcher that reads one partition at a time (Faust's does) lets one
upstream partition fall days of event time behind the others. The terminal stage applies what arrives at once and
prunes each entity's history; the events still to come from the slow partition are older than the entity's newest
event, so the pruning must reach back to the upstream's floor, not to the entity's newest event less the windows.
Then a crash: the upstream's replayed tail is sent again, older than what it announced before, and must find the
history it needs too.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import pytest

from slipstream.streams.engine.internal import decode_internal
from slipstream.streams.engine.processor import StageProcessor
from slipstream.streams.engine.topology import topology_for
from tests.fraud_reference import reference, small_fraud_streams

PARTITIONS = 3
NOW = datetime(2026, 1, 1, tzinfo=UTC)
CHUNK = 200


def _partition(key: int) -> int:
    return key % PARTITIONS


Delivery = tuple[list[tuple[bytes, bytes]], list[tuple[str, int, int]], list[tuple[str, int, int]]]


def _upstream(
    tx: list[dict[str, Any]], labels: list[dict[str, Any]], *, replay_from: int | None = None
) -> dict[int, list[Delivery]]:
    """The customer stage, one processor per upstream partition: per partition, what each chunk sends downstream
    (forwards, watermark markers, floors), in order. ``replay_from``: partition 0's worker crashes after that chunk,
    its uncommitted chunk is read and sent again by a new worker restored from the changelog."""
    topology = topology_for("fraud")
    stage = topology.stage("customer")
    stream = sorted(
        [("transactions", r) for r in tx] + [("labels", r) for r in labels],
        key=lambda e: (e[1]["event_time"], e[0] == "transactions"),
    )
    by_partition: dict[int, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for topic, record in stream:
        by_partition[_partition(record["customer_id"])].append((topic, record))
    out: dict[int, list[Delivery]] = {}
    for p, events in by_partition.items():
        proc = StageProcessor(topology, stage)
        changelog: dict[bytes, bytes | None] = {}
        deliveries: list[Delivery] = []
        chunks = [events[i : i + CHUNK] for i in range(0, len(events), CHUNK)]
        i = 0
        crashed = False
        while i < len(chunks):
            proc.committed({p})  # the commit of everything before this chunk
            for topic, record in chunks[i]:
                proc.on_event(p, topic, dict(record))
            drained = proc.drain(NOW)
            for part, key, value in drained.changelog:
                assert part == p
                changelog[key] = value
            held = {(t, p): i == len(chunks) - 1 for t in ("transactions", "labels")}
            deliveries.append((drained.forwards, proc.markers(held, PARTITIONS), proc.floors(held)))
            if p == 0 and i == replay_from and not crashed:  # killed before this chunk's commit
                crashed = True
                proc = StageProcessor(topology, stage)
                for key, value in changelog.items():
                    proc.restore(p, key, value)
                continue  # the same chunk again
            i += 1
        out[p] = deliveries
    return out


def _terminal(upstream: dict[int, list[Delivery]], order: list[int]) -> dict[str, dict[str, float]]:
    """The terminal stage fed the upstream partitions' deliveries in ``order`` (one upstream partition per entry)."""
    topology = topology_for("fraud")
    terminal = StageProcessor(topology, topology.stage("terminal"))
    cursor = dict.fromkeys(upstream, 0)
    vectors: dict[str, dict[str, float]] = {}
    for up in order:
        forwards, marks, floors = upstream[up][cursor[up]]
        cursor[up] += 1
        for key, value in forwards:
            payload = decode_internal(value)
            terminal.on_event(
                _partition(int(key)), payload["src"], payload["rec"], carried=payload["feat"], newest_us=payload["nt"]
            )
        for part in range(PARTITIONS):
            for source, upstream_p, wm in marks:
                terminal.on_marker(part, source, upstream_p, PARTITIONS, wm, floor=False)  # floors follow
            for source, upstream_p, time_us in floors:
                terminal.on_floor(part, source, upstream_p, time_us)
        for vector in terminal.drain(NOW).vectors:
            vectors[vector["event_id"]] = vector["features"]
        terminal.committed({p for p in range(PARTITIONS) if not terminal.pending_refs(p)})
    assert cursor == {up: len(d) for up, d in upstream.items()}
    assert terminal.pending() == 0
    return vectors


@pytest.fixture(scope="module")
def streams() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return small_fraud_streams(n_customers=150, n_terminals=60, days=70)


def _check(vectors: dict[str, dict[str, float]], tx: list[dict[str, Any]], labels: list[dict[str, Any]]) -> None:
    want = reference(tx, labels)
    assert set(vectors) == {str(k) for k in want}
    wrong = [
        tid
        for tid, values in want.items()
        if any(vectors[str(tid)].get(n, float("nan")) != pytest.approx(v, abs=1e-9) for n, v in values.items())
    ]
    assert not wrong, f"{len(wrong)} of {len(want)} vectors differ, e.g. {wrong[:3]}"


def _lagging_order(upstream: dict[int, list[Delivery]], slow: int, lag: int) -> list[int]:
    """Round robin, except upstream partition ``slow`` starts ``lag`` rounds late (more than the 37-day reach of the
    terminal windows behind at the end), then catches up."""
    order: list[int] = []
    remaining = {up: len(d) for up, d in upstream.items()}
    rounds = 0
    while any(remaining.values()):
        for up in sorted(upstream):
            if remaining[up] and (up != slow or rounds >= lag or all(remaining[o] == 0 for o in upstream if o != slow)):
                order.append(up)
                remaining[up] -= 1
        rounds += 1
    return order


def test_a_lagging_upstream_partition_changes_no_feature(streams: Any) -> None:
    tx, labels = streams
    upstream = _upstream(tx, labels)
    rounds = max(len(d) for d in upstream.values())
    order = _lagging_order(upstream, slow=2, lag=rounds * 2 // 3)  # ~47 of 70 days behind
    _check(_terminal(upstream, order), tx, labels)


def _time_order(upstream: dict[int, list[Delivery]], *, held_back: tuple[int, int] | None = None) -> list[int]:
    """The deliveries in the order of the event time they reach, as a terminal reads them when every upstream worker
    runs at the same pace; ``held_back=(partition, index)``: that delivery arrives with the partition's next one."""
    keyed = []
    for up, deliveries in upstream.items():
        reached = [max(wm for _, _, wm in marks) for _, marks, _ in deliveries]
        if held_back is not None and held_back[0] == up and held_back[1] + 1 < len(reached):
            reached[held_back[1]] = reached[held_back[1] + 1]
        keyed.extend((at, up, i) for i, at in enumerate(reached))
    return [up for _, up, _ in sorted(keyed)]


def test_an_upstream_replay_after_a_crash_changes_no_feature(streams: Any) -> None:
    """Partition 0's worker dies before committing a chunk it already sent; the new one, restored from the changelog,
    sends it again a while later: the other partitions have run on meanwhile, the terminal has emitted all it held up
    to the replayed events' time, and its entities' newest events are days younger than those replayed."""
    tx, labels = streams
    replayed = 12
    upstream = _upstream(tx, labels, replay_from=replayed)
    assert len(upstream[0]) > replayed + 2
    _check(_terminal(upstream, _time_order(upstream, held_back=(0, replayed + 1))), tx, labels)
