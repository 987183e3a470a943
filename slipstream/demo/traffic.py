"""Traffic: the warm-up as fast as the producer takes it, then the live stream at a fixed rate with its labels."""

from __future__ import annotations

import threading
import time

from slipstream.demo.stats import LiveStats
from slipstream.demo.timeline import Events, merge_order
from slipstream.schemas.transport import EventProducer
from slipstream.streams.publish import Pacer


def produce_all(producer: EventProducer, tx: Events, labels: Events, stop: threading.Event) -> int:
    """Send transactions and labels in time order as fast as the producer takes them (the warm-up): both topics
    advance together, so the engine's outputs, which wait for every source to reach their time, flow as it goes."""
    contracts = producer.contracts
    tx_serde, label_serde = contracts.serde("transactions"), contracts.serde("labels")
    sent = 0
    for is_tx, i in merge_order(tx.columns["event_time"], labels.columns["event_time"]):
        if sent % 10_000 == 0 and stop.is_set():
            break
        topic, serde, record = (
            ("transactions", tx_serde, tx.record(i)) if is_tx else ("labels", label_serde, labels.record(i))
        )
        producer.send_raw(serde.topic, contracts.key(topic, record), serde.encode(record))
        sent += 1
    return sent


def stream_live(
    producer: EventProducer,
    tx: Events,
    labels: Events,
    stats: LiveStats,
    stop: threading.Event,
    *,
    rate: float,
    poison_every: int,
) -> None:
    """Transactions at ``rate`` per second, each label when its time comes, a truncated message now and then."""
    contracts = producer.contracts
    tx_serde, label_serde = contracts.serde("transactions"), contracts.serde("labels")
    fraud = tx.columns["tx_fraud"]
    pacer = Pacer(rate)
    for is_tx, i in merge_order(tx.columns["event_time"], labels.columns["event_time"]):
        if stop.is_set():
            return
        if not is_tx:
            record = labels.record(i)
            producer.send_raw(label_serde.topic, contracts.key("labels", record), label_serde.encode(record))
            stats.labels += 1
            continue
        pacer.wait(i)
        record = tx.record(i)
        key, value = contracts.key("transactions", record), tx_serde.encode(record)
        stats.on_sent(record, bool(fraud[i]), time.perf_counter())
        producer.send_raw(tx_serde.topic, key, value)
        if poison_every and i % poison_every == poison_every - 1:
            producer.send_raw(tx_serde.topic, key, value[: len(value) // 2])  # truncated: a poison message
            stats.poisoned += 1
    producer.flush()
    stats.exhausted = True
