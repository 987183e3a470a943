"""The fraud feature engine against the real broker and Redis: exact vectors, dead letters, crash and restart."""

from __future__ import annotations

import bisect
import collections
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from slipstream.features.definitions.fraud import FRAUD
from slipstream.features.exceptions import OnlineStoreError
from slipstream.features.feast_repo import view_layouts
from slipstream.features.online_store import RedisFeatureReader
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.framing import SingleObjectFraming
from slipstream.schemas.registry import SchemaRegistry
from slipstream.schemas.transport import EventConsumer, EventProducer
from slipstream.streams.engine.app import EngineJob, run_threads
from slipstream.streams.engine.runner import EngineSettings
from tests.conftest import Services
from tests.fraud_reference import reference, small_fraud_streams

pytestmark = pytest.mark.integration
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def streams() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return small_fraud_streams(n_customers=40, n_terminals=80, days=40)


def _publish(services: Services, contracts: Contracts, tx: list[dict[str, Any]], labels: list[dict[str, Any]]) -> None:
    with EventProducer(services.bootstrap_servers, contracts, linger_ms=5) as producer:
        for record in tx:
            producer.send("transactions", record)
        for record in labels:
            producer.send("labels", record)


def feature_log(
    services: Services, contracts: Contracts, expected: int, patience_s: float = 3.0
) -> dict[str, dict[str, float]]:
    """The last vector per event id, as a consumer of the feature log sees it: read until ``expected`` ids and a
    quiet poll, or, short of them, until nothing came for ``patience_s`` (a loaded machine's fetch may pause)."""
    latest: dict[str, dict[str, float]] = {}
    with EventConsumer(services.bootstrap_servers, contracts, ["feature-log"]) as consumer:
        last = time.monotonic()
        while time.monotonic() - last < (3.0 if len(latest) >= expected else patience_s):
            batch = consumer.poll_batch(max_records=5000, timeout=0.5)
            assert batch.failures == []
            for event in batch.events:
                latest[str(event.value["event_id"])] = dict(event.value["features"])
            if batch.events:
                last = time.monotonic()
            elif len(latest) >= expected:
                break
    return latest


def _dead_letters(services: Services, contracts: Contracts) -> dict[str, int]:
    """The dead-letter topic's records by processor, error type and the reason's first words."""
    seen: collections.Counter[str] = collections.Counter()
    with EventConsumer(services.bootstrap_servers, contracts, ["dead-letter"]) as consumer:
        for _ in range(6):
            batch = consumer.poll_batch(max_records=5000, timeout=0.5)
            for event in batch.events:
                value = event.value
                seen[f"{value['processor']}/{value['error_type']}: {' '.join(str(value['reason']).split()[:2])}"] += 1
    return dict(seen)


def missing_report(
    got: dict[str, dict[str, float]], tx: list[dict[str, Any]], services: Services, contracts: Contracts
) -> str:
    """Which transactions have no vector: how many, their event-time span and where they sit in the stream, by
    terminal partition — to tell a run that stopped early (the tail) from records lost at a hand-over — and what the
    dead-letter topic holds (events refused as late after a hand-over would show there)."""
    lost = [r for r in tx if str(r["transaction_id"]) not in got]
    if not lost:
        return "none missing"
    times = sorted(int(r["event_time"]) for r in tx)
    first, last = min(int(r["event_time"]) for r in lost), max(int(r["event_time"]) for r in lost)
    share = [round(bisect.bisect_left(times, t) / len(times), 3) for t in (first, last)]
    terminals = collections.Counter(int(r["terminal_id"]) % 6 for r in lost)
    customers = collections.Counter(int(r["customer_id"]) % 6 for r in lost)
    return (
        f"{len(lost)} of {len(tx)} transactions have no vector; their event times span stream positions "
        f"{share[0]:.1%}..{share[1]:.1%}; by terminal_id % 6: {dict(terminals)}; "
        f"by customer_id % 6: {dict(customers)}; dead letters: {_dead_letters(services, contracts)}"
    )


def _settings(services: Services, project: str, lateness_s: float = 2.0, runtime: str = "kafka") -> EngineSettings:
    return EngineSettings(
        services.bootstrap_servers, services.redis_url, project=project, lateness_s=lateness_s, runtime=runtime
    )


def _compare(got: dict[str, dict[str, float]], want: dict[int, dict[str, float]]) -> int:
    mismatches = 0
    for tid, values in want.items():
        vector = got.get(str(tid))
        if vector is None:
            mismatches += 1
            continue
        mismatches += sum(abs(vector[name] - value) > 1e-9 for name, value in values.items())
    return mismatches


def test_engine_vectors_and_online_state_equal_the_reference(
    services: Services, contracts: Contracts, streams: Any, runtime: str
) -> None:
    tx, labels = streams
    _publish(services, contracts, tx, labels)
    project = f"t{uuid.uuid4().hex[:8]}"
    job = EngineJob(_settings(services, project, runtime=runtime), contracts.catalog.prefix, "fraud")
    stats = run_threads(job, threading.Event(), until_idle_s=3.0)
    assert stats["customer"].applied == len(tx)
    assert stats["terminal"].applied == len(tx) + len(labels)

    want = reference(tx, labels)
    got = feature_log(services, contracts, len(want))
    assert len(got) == len(want)
    assert _compare(got, want) == 0

    # The online store holds each customer's features as of their newest transaction, in Feast's layout.
    reader = RedisFeatureReader(
        redis.Redis.from_url(services.redis_url), [view_layouts([FRAUD], project)["customer_spending"]]
    )
    newest: dict[int, dict[str, Any]] = {}
    for record in tx:
        newest[record["customer_id"]] = record
    for customer_id, record in list(newest.items())[:25]:
        online = reader.read({"customer_id": customer_id})
        assert online is not None
        expected = want[record["transaction_id"]]
        for name, value in online.values.items():
            assert value == pytest.approx(expected[name], abs=1e-9)


def test_an_input_with_empty_partitions_still_releases_every_vector(
    services: Services, contracts: Contracts, streams: Any, runtime: str
) -> None:
    """No labels at all (an empty topic the terminal stage reads): its partitions count as read to their end, so the
    watermarks advance and every transaction's vector comes out (the Faust runtime once waited for ever here)."""
    tx, _labels = streams
    tx = tx[: len(tx) // 4]
    _publish(services, contracts, tx, [])
    job = EngineJob(_settings(services, f"t{uuid.uuid4().hex[:8]}", runtime=runtime), contracts.catalog.prefix, "fraud")
    stats = run_threads(job, threading.Event(), until_idle_s=3.0)
    assert stats["terminal"].applied == len(tx)
    want = reference(tx, [])
    got = feature_log(services, contracts, len(want))
    assert len(got) == len(want)
    assert _compare(got, want) == 0


def test_malformed_events_are_dead_lettered_and_the_engine_goes_on(
    services: Services, contracts: Contracts, runtime: str
) -> None:
    """1,000 malformed events interleaved with 10,000 valid ones: 1,000 dead letters with reasons, 10,000 applied."""
    tx, _labels = small_fraud_streams(n_customers=250, n_terminals=500, days=30)
    good = tx[:10_000]
    assert len(good) == 10_000
    producer = EventProducer(services.bootstrap_servers, contracts, linger_ms=5)
    topic = contracts.topic("transactions")
    serde = contracts.serde("transactions")
    kinds = ["truncated", "garbage", "negative_amount", "unknown_schema"]
    for i, record in enumerate(good):
        producer.send("transactions", record)
        if i % 10 == 0:
            kind = kinds[(i // 10) % len(kinds)]
            encoded = serde.encode(record)
            if kind == "truncated":
                value = encoded[:-4]
            elif kind == "garbage":
                value = b"not an event at all"
            elif kind == "negative_amount":
                value = _encode_unchecked(serde, record | {"amount": -12.5})
            else:
                value = encoded[:2] + bytes(8) + encoded[10:]
            producer.send_raw(topic, str(record["customer_id"]).encode(), value)
    producer.flush()
    project = f"t{uuid.uuid4().hex[:8]}"
    job = EngineJob(_settings(services, project, runtime=runtime), contracts.catalog.prefix, "fraud", ("customer",))
    stats = run_threads(job, threading.Event(), until_idle_s=2.0)
    assert stats["customer"].applied == 10_000
    assert stats["customer"].dead_lettered == 1_000
    with EventConsumer(services.bootstrap_servers, contracts, ["dead-letter"]) as dlq:
        letters = []
        for _ in range(60):
            letters.extend(dlq.poll_batch(max_records=2000, timeout=0.5).events)
            if len(letters) >= 1_000:
                break
    assert len(letters) == 1_000
    by_type: dict[str, int] = {}
    for letter in letters:
        by_type[str(letter.value["error_type"])] = by_type.get(str(letter.value["error_type"]), 0) + 1
        assert letter.value["source_topic"] == topic
        assert letter.value["original_value"]
        assert letter.value["reason"]
    assert by_type == {"schema_mismatch": 250, "undecodable": 500, "invalid_field": 250}
    reasons = {str(letter.value["reason"]) for letter in letters if letter.value["error_type"] == "invalid_field"}
    assert all("amount must be a finite number >= 0, got -12.5" in reason for reason in reasons)


def _encode_unchecked(serde: Any, record: dict[str, Any]) -> bytes:
    """What a foreign producer that skips validation would write."""
    import io

    import fastavro

    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, serde.schema.parsed, record)
    return SingleObjectFraming(SchemaRegistry.load()).frame(serde.topic, serde.schema, buf.getvalue())


def test_a_stage_that_fails_commits_nothing_and_a_restart_reads_it_all(
    services: Services, contracts: Contracts, streams: Any
) -> None:
    """Redis refuses the state writes: the stage stops with the error and leaves its offsets where they were, so the
    next run reads every event again (at least once), and nothing is lost."""
    from tests.integration.serving.http_server import free_port

    tx, labels = streams
    _publish(services, contracts, tx, labels)
    project = f"t{uuid.uuid4().hex[:8]}"
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    broken = EngineSettings(services.bootstrap_servers, dead_redis, project=project)
    job = EngineJob(broken, contracts.catalog.prefix, "fraud", stages=("customer",))
    with pytest.raises(OnlineStoreError, match="Connection refused"):
        run_threads(job, threading.Event(), until_idle_s=3)
    stats = run_threads(
        EngineJob(_settings(services, project), contracts.catalog.prefix, "fraud", stages=("customer",)),
        threading.Event(),
        until_idle_s=3,
    )
    assert stats["customer"].consumed == len(tx) + len(labels)
