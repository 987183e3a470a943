"""The Kafka runner of recommendations without a broker: records fit the contract, bad requests are dead-lettered,
an unreadable store is waited out, and offsets are committed only after the outputs are flushed."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from slipstream.schemas.contracts import Contracts
from slipstream.schemas.dead_letter import RawMessage
from slipstream.schemas.transport.consumer import ConsumedBatch, ConsumedEvent
from slipstream.serving.base import RankedItem, Recommendation
from slipstream.serving.exceptions import FeaturesUnavailableError, InvalidRequestError
from slipstream.serving.metrics import ScorerMetrics
from slipstream.serving.reco import normalize_reco_request
from slipstream.serving.reco_stream import RecoStream, recommendation_record
from slipstream.serving.service import ScoringService
from tests.samples import sample

T0 = 1_700_000_000_000_000
CONTRACTS = Contracts.default()


def ranked(request: Mapping[str, Any]) -> Recommendation:
    query = normalize_reco_request(request)
    items = tuple(
        RankedItem(c.item_id, 1.0 / rank, rank, {"ITEM_RECENT_VIEWS_7D": c.retrieval_views_7d})
        for rank, c in enumerate(query.candidates, start=1)
    )
    timings = {"redis_us": 1.0, "features_us": 2.0, "model_us": 3.0, "total_us": 6.0}
    newest = query.event_time_us - 5000
    return Recommendation(query.request_id, query.user_id, query.event_time_us, "reco", "2", items, newest, timings)


class Ranker:
    """Fails with ``failures`` first (one per call), then ranks candidates in the order given."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.calls = 0

    def rank(self, request: Mapping[str, Any]) -> Recommendation:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return ranked(request)


@dataclass
class Consumer:
    batches: list[ConsumedBatch]
    log: list[str]

    def poll_batch(self, max_records: int = 1000, timeout: float = 1.0) -> ConsumedBatch:
        return self.batches.pop(0) if self.batches else ConsumedBatch()

    def commit(self, *, asynchronous: bool = False) -> None:
        self.log.append("commit")


@dataclass
class Producer:
    log: list[str]
    contracts: Contracts = CONTRACTS
    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    dead: list[tuple[RawMessage, str, str]] = field(default_factory=list)

    def send(self, topic: str, record: Mapping[str, Any]) -> None:
        self.contracts.serde(topic).encode(record)  # the record fits the contract
        self.sent.append((topic, dict(record)))

    def dead_letter(self, message: RawMessage, *, error_type: str, reason: str, processor: str) -> None:
        self.dead.append((message, error_type, reason))

    def poll(self, timeout: float = 0.0) -> int:
        return 0

    def in_flight(self) -> int:
        return 0  # this fake's sends are acknowledged at once

    def flush(self, timeout: float = 30.0) -> None:
        self.log.append("flush")


def event(offset: int, **change: Any) -> ConsumedEvent:
    value = sample("reco_request", offset) | change
    return ConsumedEvent("p.recommendation-requests", 1, offset, None, b"7", value)


def stream(ranker: Ranker, *batches: list[ConsumedEvent]) -> tuple[RecoStream, Consumer, Producer]:
    log: list[str] = []
    consumer = Consumer([ConsumedBatch(list(b)) for b in batches], log)
    producer = Producer(log)
    service = ScoringService(None, None, None, ScorerMetrics(), reco=ranker)  # type: ignore[arg-type]
    return RecoStream(service, consumer, producer, commit_interval_s=0.0), consumer, producer  # type: ignore[arg-type]


def test_requests_become_recommendations_and_bad_ones_dead_letters() -> None:
    duplicate = [{"item_id": 5, "category_id": 3, "retrieval_views_7d": 1.0}] * 2
    runner, _, producer = stream(
        Ranker(),
        [event(0), event(1, request_id=None, top_k=1), event(2, candidates=duplicate), event(3, top_k=0)],
    )
    stats = runner.run(threading.Event(), until_idle_s=0.0)
    assert (stats.consumed, stats.ranked, stats.invalid, stats.items) == (4, 2, 2, 3)
    (t0, first), (t1, second) = producer.sent
    assert t0 == t1 == "recommendations"
    assert first["request_id"] == "r-0" and first["source_offset"] == 0 and len(first["items"]) == 2
    assert first["items"][0] == {"item_id": 5, "score": 1.0, "rank": 1, "features": {"ITEM_RECENT_VIEWS_7D": 120.0}}
    assert (first["model_name"], first["model_version"], first["feature_age_ms"]) == ("reco", "2", 5.0)
    assert first["event_time"] == sample("reco_request")["event_time"].timestamp() * 1e6
    assert first["received_at"] <= first["scored_at"] and first["timings_us"]["total_us"] == 6.0
    assert second["request_id"] == "p.recommendation-requests/1/1"  # no id: a replay keeps the same one
    assert [i["item_id"] for i in second["items"]] == [5]  # top_k
    reasons = [(m.offset, kind, reason) for m, kind, reason in producer.dead]
    assert reasons[0][:2] == (2, "invalid_value") and "candidates[1].item_id=5 repeats candidates[0]" in reasons[0][2]
    assert reasons[1] == (3, "invalid_value", "top_k must be >= 1 or null, got 0")
    assert producer.dead[0][0].value is not None  # the original request, re-encoded, rides along


def test_an_unreadable_store_is_waited_out_and_committed_after_the_flush() -> None:
    ranker = Ranker(FeaturesUnavailableError("down"), FeaturesUnavailableError("down"))
    runner, consumer, producer = stream(ranker, [event(0)])
    stats = runner.run(threading.Event(), until_idle_s=0.0)
    assert (stats.retries, stats.ranked, ranker.calls) == (2, 1, 3)
    assert len(producer.sent) == 1
    assert consumer.log == ["flush", "commit"]


def test_stopped_while_waiting_commits_nothing() -> None:
    stop = threading.Event()

    class Stopping(Ranker):
        def rank(self, request: Mapping[str, Any]) -> Recommendation:
            stop.set()
            msg = "down"
            raise FeaturesUnavailableError(msg)

    runner, consumer, producer = stream(Stopping(), [event(0), event(1)])
    stats = runner.run(stop)
    assert (stats.consumed, stats.ranked, producer.sent) == (2, 0, [])
    assert "commit" not in consumer.log  # both requests are read again on restart


def test_the_record_fits_the_contract_and_keeps_the_lineage() -> None:
    reco = ranked(sample("reco_request") | {"event_time": T0})
    record = recommendation_record(reco, scored_us=T0 + 900)
    decoded = CONTRACTS.serde("recommendations").decode(CONTRACTS.serde("recommendations").encode(record))
    assert [i["item_id"] for i in decoded["items"]] == [5, 9]
    assert decoded["feature_age_ms"] == 5.0 and decoded["received_at"] is None and decoded["source_offset"] is None
    assert CONTRACTS.key("recommendations", record) == b"7"


def test_a_service_without_a_ranker_is_refused() -> None:
    service = ScoringService(None, None, None, ScorerMetrics())  # type: ignore[arg-type]
    with pytest.raises(Exception, match="no reco scorer"):
        RecoStream(service, None, None)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError):
        Ranker().rank({"user_id": 1})
