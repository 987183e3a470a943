"""The engine's two fraud stages, wired by hand (no broker): results equal a sequential replay of the pure core,
whatever the skew between labels and transactions, with duplicates, and with late events inside the lateness."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from features.definitions.fraud import CUSTOMER_VIEW, FRAUD, TERMINAL_VIEW
from features.windows import EntityState, compute_view, request_features, to_micros
from streams.engine.processor import StageProcessor, decode_internal
from streams.engine.topology import topology_for
from streams.simulate.fraud import FraudSimConfig, label_events, simulate_transactions, to_transaction_events

PARTITIONS = 3
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _micros_record(row: dict[str, Any]) -> dict[str, Any]:
    return {k: to_micros(v.to_pydatetime()) if isinstance(v, pd.Timestamp) else v for k, v in row.items()}


@pytest.fixture(scope="module")
def streams() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    config = FraudSimConfig(n_customers=60, n_terminals=120, nb_days=45)
    frame = simulate_transactions(config)
    tx = to_transaction_events(frame)
    tx["terminal_id"] = tx["terminal_id"].astype("int64")
    labels = label_events(frame, config)
    labels["is_fraud"] = labels["is_fraud"].astype(bool)
    tx_records = [_micros_record(r) for r in tx.to_dict("records")]
    label_records = [_micros_record(r) for r in labels.sort_values("event_time", kind="stable").to_dict("records")]
    return tx_records, label_records


def reference(tx: list[dict[str, Any]], labels: list[dict[str, Any]]) -> dict[int, dict[str, float]]:
    events = [(r["event_time"], 0, r["transaction_id"], "labels", r) for r in labels]
    events += [(r["event_time"], 1, r["transaction_id"], "transactions", r) for r in tx]
    events.sort(key=lambda e: e[:3])
    customers: dict[int, EntityState] = {}
    terminals: dict[int, EntityState] = {}
    out: dict[int, dict[str, float]] = {}
    for t, _, tid, topic, r in events:
        terminal = terminals.setdefault(r["terminal_id"], EntityState())
        terminal.apply(TERMINAL_VIEW.source(topic), r, TERMINAL_VIEW.reach_us, 0)
        if topic == "transactions":
            customer = customers.setdefault(r["customer_id"], EntityState())
            customer.apply(CUSTOMER_VIEW.source(topic), r, CUSTOMER_VIEW.reach_us, 0)
            values = request_features(FRAUD.request, r)
            values |= compute_view(CUSTOMER_VIEW, customer, t, topic, tid)
            values |= compute_view(TERMINAL_VIEW, terminal, t, topic, tid)
            out[tid] = values
    return out


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

    for batch in [*batches(), []]:
        for topic, record in batch:
            customer.on_event(_partition(record["customer_id"]), topic, dict(record))
        out1 = customer.drain(NOW)
        late += len(out1.late)
        seen = {_partition(r["customer_id"]) for _, r in batch}
        idle = not batch
        marks = customer.markers({p: idle or p not in seen for p in range(PARTITIONS)}, PARTITIONS)
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
