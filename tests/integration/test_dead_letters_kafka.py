"""Dead letters on a real broker: a typed consumer dead-letters the demo's poison messages and events of a schema it
does not know yet; they are listed and filtered, re-driven once after the consumer learns the schema, and what fails
again lands in the quarantine with its new reason."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from slipstream.schemas.contracts import Contracts
from slipstream.schemas.dead_letter import REDRIVE_FROM_HEADER, REDRIVE_HEADER, REDRIVE_ID_HEADER, RawMessage
from slipstream.schemas.dead_letter_filters import Letter, LetterFilter, make_filter
from slipstream.schemas.exceptions import ProduceError
from slipstream.schemas.framing import SingleObjectFraming
from slipstream.schemas.registry import SchemaRegistry, SchemaVersion
from slipstream.schemas.transport import EventConsumer, EventProducer
from slipstream.schemas.transport.redrive import list_dead_letters, read_redrive_log, read_to_end, redrive
from tests.conftest import Services
from tests.samples import sample

pytestmark = pytest.mark.integration

HOUR_MS = 3_600_000


def _transaction_v2(registry: SchemaRegistry) -> dict[str, Any]:
    """A newer Transaction a producer has started writing: a channel field, with a default (FULL compatible)."""
    raw = dict(registry.get("transaction").raw)
    raw["fields"] = [*raw["fields"], {"name": "channel", "type": "string", "default": "card"}]
    return raw


def _with(contracts: Contracts, registry: SchemaRegistry) -> Contracts:
    return Contracts(contracts.catalog, registry, SingleObjectFraming(registry))


def _newer_producer_contracts(contracts: Contracts) -> Contracts:
    """The producer's side: Transaction v2 is its current schema."""
    base = contracts.registry
    current = {**base.current, "transaction": SchemaVersion("transaction", 0, _transaction_v2(base))}
    return _with(contracts, SchemaRegistry(current, base.released))


def _fixed_consumer_contracts(contracts: Contracts) -> Contracts:
    """The fix: the consumer learns v2 (released), and resolves it to the Transaction it reads (v1)."""
    base = contracts.registry
    v2 = SchemaVersion("transaction", 2, _transaction_v2(base))
    released = {**base.released, "transaction": (*base.versions("transaction"), v2)}
    return _with(contracts, SchemaRegistry(base.current, released))


def _drain(consumer: EventConsumer, expected: int, patience_s: float = 30.0) -> tuple[list[dict[str, Any]], int]:
    events: list[dict[str, Any]] = []
    failures = 0
    deadline = time.monotonic() + patience_s
    while len(events) + failures < expected and time.monotonic() < deadline:
        batch = consumer.poll_batch(max_records=500, timeout=0.5)
        events.extend(e.value for e in batch.events)
        failures += len(batch.failures)
    return events, failures


def _redriven_on(services: Services, topic: str) -> dict[str, Any]:
    """The records of ``topic`` that carry the re-drive mark, by the mark (the envelope's id)."""
    found: dict[str, Any] = {}
    for message in read_to_end(services.bootstrap_servers, topic):
        headers = dict(message.headers() or [])
        if REDRIVE_HEADER in headers:
            mark = f"{headers[REDRIVE_FROM_HEADER].decode()}/{headers[REDRIVE_HEADER].decode()}"
            assert mark not in found, f"{mark} re-driven twice"
            found[mark] = message
    return found


def test_poison_and_unknown_schema_are_listed_redriven_once_and_quarantined(
    services: Services, contracts: Contracts
) -> None:
    bootstrap = services.bootstrap_servers
    topic = contracts.topic("transactions")
    stamp = int(time.time() * 1000) - HOUR_MS  # the originals' own time, an hour ago: a re-drive must keep it

    # A producer already on Transaction v2, and the demo's poison: a transaction truncated to half its bytes.
    newer = _newer_producer_contracts(contracts)
    with EventProducer(bootstrap, newer) as producer:
        serde = newer.serde("transactions")
        for i in range(12):
            record = sample("transaction", i) | {"channel": "web"}
            key, value = newer.key("transactions", record), serde.encode(record)
            producer.send_raw(topic, key, value, headers=[("trace", f"t{i}".encode())], timestamp_ms=stamp + i)
            if i % 4 == 3:
                producer.send_raw(topic, key, value[: len(value) // 2], timestamp_ms=stamp + 100 + i)
    with EventProducer(bootstrap, contracts) as producer:
        for i in range(20, 24):
            producer.send("transactions", sample("transaction", i))
        value = contracts.serde("transactions").encode(sample("transaction", 24))
        producer.send_raw(topic, b"620", value[: len(value) // 2], timestamp_ms=stamp + 200)

    # The processor, on v1 only: 4 events, 16 dead letters.
    with (
        EventProducer(bootstrap, contracts) as dead_letters,
        EventConsumer(bootstrap, contracts, ["transactions"], dead_letters=dead_letters, processor="fraud-v1") as c,
    ):
        events, failures = _drain(c, 4 + 16)
    assert (len(events), failures) == (4, 16)

    # Listed, counted, filtered.
    listing = list_dead_letters(bootstrap, contracts)
    assert len(listing.letters) == 16 and listing.unreadable == 0
    assert Counter(x.error_type for x in listing.letters) == {"undecodable": 15, "schema_mismatch": 1}
    assert {x.processor for x in listing.letters} == {"fraud-v1"}

    def matching(**kwargs: Any) -> list[Letter]:
        return list_dead_letters(bootstrap, contracts, make_filter(now=datetime.now(UTC), **kwargs)).letters

    assert len(matching(reason="unknown schema fingerprint")) == 15
    assert len(matching(error_types=["schema_mismatch"])) == 1
    assert len(matching(reason_regex=r"does not decode with schema 'transaction' v0")) == 1
    assert len(matching(source_topics=[topic], since="10m")) == 16
    assert matching(until="10m") == []
    assert matching(processors=["score-stream"]) == []
    first = listing.letters[0]
    assert [x.id for x in matching(ids=[first.id])] == [first.id]

    # The fix: the consumer learns v2. It starts at today's end, so it sees only what is re-driven.
    fixed = _fixed_consumer_contracts(contracts)
    with (
        EventProducer(bootstrap, fixed) as dead_letters,
        EventConsumer(
            bootstrap, fixed, ["transactions"], from_beginning=False, dead_letters=dead_letters, processor="fraud-v2"
        ) as consumer,
    ):
        undecodable = LetterFilter(error_types=frozenset({"undecodable"}))
        dry = redrive(bootstrap, contracts, undecodable, dry_run=True)
        assert (len(dry.plan.chosen), dry.redriven) == (15, [])
        assert _redriven_on(services, topic) == {}

        report = redrive(bootstrap, contracts, undecodable)
        assert (len(report.redriven), report.skipped_already, report.transactions) == (15, 0, 1)

        # On the original topic: original key, value, partition and timestamp, the original headers, the marks.
        sent = _redriven_on(services, topic)
        assert set(sent) == {f"dead-letter/{x.id}" for x in report.redriven}
        for letter in report.redriven:
            message = sent[f"dead-letter/{letter.id}"]
            assert message.partition() == letter.record["source_partition"]
            assert message.timestamp()[1] == letter.source_timestamp_ms
            assert (message.key(), message.value()) == (letter.record["original_key"], letter.record["original_value"])
            headers = dict(message.headers() or [])
            assert headers[REDRIVE_ID_HEADER] == report.redrive_id.encode()
            assert headers.get("trace") == letter.headers.get("trace")

        # Again: nothing is re-driven twice.
        again = redrive(bootstrap, contracts, undecodable)
        assert (again.redriven, again.skipped_already) == ([], 15)
        assert len(read_redrive_log(bootstrap, contracts)) == 15

        # The fixed consumer takes the 12 it could not read before; the 3 poisons fail again, now as truncated
        # bodies of a schema it knows, and go to the quarantine with that new reason.
        events, failures = _drain(consumer, 15)
        assert (len(events), failures) == (12, 3)
        assert {e["transaction_id"] for e in events} == set(range(12))
    quarantined = list_dead_letters(bootstrap, contracts, quarantine=True).letters
    assert len(quarantined) == 3
    assert {x.error_type for x in quarantined} == {"schema_mismatch"}
    assert {x.processor for x in quarantined} == {"fraud-v2"}
    assert all("does not decode with schema 'transaction' v2" in x.reason for x in quarantined)
    poisons = {x.id for x in listing.letters if stamp + 100 <= (x.source_timestamp_ms or 0) < stamp + 200}
    assert {x.headers[REDRIVE_HEADER].decode() for x in quarantined} == poisons  # the v2 poisons, and only they
    assert all(x.quarantined for x in quarantined)
    assert len(list_dead_letters(bootstrap, contracts).letters) == 16  # nothing new among the first failures

    # Never re-driven again on their own: a re-drive of everything takes only the one never re-driven.
    everything = redrive(bootstrap, contracts, LetterFilter(), dry_run=True)
    assert [x.error_type for x in everything.plan.chosen] == ["schema_mismatch"]
    assert everything.skipped_already == 15

    # Asked explicitly, the quarantine is re-driven — once.
    from_q = redrive(bootstrap, contracts, LetterFilter(), from_quarantine=True)
    assert len(from_q.redriven) == 3
    assert redrive(bootstrap, contracts, LetterFilter(), from_quarantine=True).skipped_already == 3
    marks = set(_redriven_on(services, topic))
    assert {f"dead-letter-quarantine/{x.id}" for x in quarantined} <= marks


def test_concurrent_redrives_send_each_envelope_once(services: Services, contracts: Contracts) -> None:
    bootstrap = services.bootstrap_servers
    topic = contracts.topic("labels")
    n = 40
    with EventProducer(bootstrap, contracts) as producer:
        for i in range(n):
            raw = RawMessage(topic, i % 6, i, None, str(i).encode(), b"\x00not avro %d" % i, ())
            producer.dead_letter(raw, error_type="undecodable", reason=f"bad {i}", processor="test")

    results: list[int] = []
    errors: list[str] = []
    start = threading.Barrier(3)

    def run() -> None:
        start.wait()
        try:
            results.append(len(redrive(bootstrap, contracts, LetterFilter()).redriven))
        except ProduceError as exc:  # fenced by the other: nothing of it was committed
            errors.append(str(exc))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    last = redrive(bootstrap, contracts, LetterFilter())  # picks up whatever the fenced runs left
    assert sum(results) + len(last.redriven) == n
    assert len(results) + len(errors) == 3
    assert all("fenced" in e for e in errors)
    sent = _redriven_on(services, topic)  # asserts no envelope arrived twice
    assert len(sent) == n
    assert len(read_redrive_log(bootstrap, contracts)) == n
