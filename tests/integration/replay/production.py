"""A little production to record: the fraud world's live day scored by the real engine and Kafka scorer, with a
promotion in the middle, labels arriving, and poison messages dead-lettered."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slipstream.features.definitions import feature_sets
from slipstream.replay.record import Recorder, RecordPlan
from slipstream.schemas.transport import EventProducer
from tests.integration.serving.fixtures import FraudWorld, live_pipeline

POISON_EVERY = 29


@dataclass
class Production:
    world: FraudWorld
    start: datetime
    end: datetime
    scored: int
    poisoned: int
    versions: list[str]


def live_labels(world: FraudWorld, live: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "transaction_id": r["transaction_id"],
            "customer_id": r["customer_id"],
            "terminal_id": r["terminal_id"],
            "tx_event_time": r["event_time"],
            "event_time": r["event_time"] + 1_000_000,
            "is_fraud": int(int(r["transaction_id"]) in world.frauds),
            "fraud_scenario": 0,
        }
        for r in live
    ]


def run_production(world: FraudWorld) -> Production:
    """Score the live day (and its labels, one second after each transaction) while the engine runs; promote the
    second model halfway; a truncated transaction now and then."""
    contracts = world.contracts
    live = world.live_tx
    n_live = len(live)
    labels = live_labels(world, live)
    poisoned = 0
    with live_pipeline(world) as (service, stream):
        start = datetime.now(UTC)
        with EventProducer(world.services.bootstrap_servers, contracts, linger_ms=1) as out:
            tx_serde = contracts.serde("transactions")
            for i, record in enumerate(live):
                if i == n_live // 2:
                    out.flush()
                    sent = i + poisoned
                    _wait(lambda sent=sent: stream.stats.consumed >= sent)
                    world.registry.promote("fraud", world.versions[1], producer=out)
                    _wait(lambda: service.fraud_slot.current.version == world.versions[1])
                value = tx_serde.encode(record)
                out.send_raw(tx_serde.topic, contracts.key("transactions", record), value)
                out.send("labels", labels[i])
                if i % POISON_EVERY == POISON_EVERY - 1:
                    out.send_raw(tx_serde.topic, contracts.key("transactions", record), value[: len(value) // 2])
                    poisoned += 1
                if i % 50 == 0:
                    out.flush()
                    time.sleep(0.02)
        _wait(lambda: stream.stats.consumed >= n_live + poisoned)
        end = datetime.now(UTC)
    return Production(world, start, end, stream.stats.scored, poisoned, list(world.versions))


def _wait(done: Any, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            msg = "production did not get there in time"
            raise AssertionError(msg)
        time.sleep(0.02)


def record(production: Production, out: Path) -> dict[str, Any]:
    world = production.world
    recorder = Recorder(
        world.contracts,
        world.services.bootstrap_servers,
        feature_sets(),
        lateness_s=world.app.settings.lateness_s,
        registry=world.registry,
        settings_note={"lateness_s": world.app.settings.lateness_s, "fraud_model": "fraud"},
    )
    plan = RecordPlan(("transactions",), production.start, production.end)
    return recorder.record(plan, out)
