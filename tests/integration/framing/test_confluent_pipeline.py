"""The Confluent wire format end to end: with a schema registry configured, producers, the feature engine, the
Kafka scorer and its predictions all speak ``00`` + a 4-byte big-endian schema id + the Avro body, the ids come from
the registry (subjects ``<topic>-value``), and the scores equal the offline engine's features scored by the
champion. A record in the other framing is dead-lettered with the reason; the pipeline keeps going."""

from __future__ import annotations

import struct
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import Consumer

from slipstream.schemas.contracts import Contracts
from slipstream.schemas.framing import ConfluentFraming
from slipstream.schemas.topics import TopicCatalog
from slipstream.schemas.transport import EventProducer, TopicAdmin
from tests.conftest import Services
from tests.integration.framing.registry import RunningRegistry, running_registry
from tests.integration.serving.fixtures import FraudWorld, build_world, live_pipeline, offline_vectors

pytestmark = pytest.mark.timeout(300)
HEADER = struct.Struct(">bI")


@pytest.fixture
def registry() -> Iterator[RunningRegistry]:
    with running_registry() as running:
        yield running


@pytest.fixture
def confluent(services: Services, registry: RunningRegistry) -> Iterator[Contracts]:
    """This repo's contracts in the Confluent wire format under a fresh prefix, every declared topic created."""
    base = Contracts.default(schema_registry_url=registry.url)
    catalog = TopicCatalog(f"t-{uuid.uuid4().hex[:10]}.")
    scoped = Contracts(catalog, base.registry, base.framing)
    admin = TopicAdmin(services.bootstrap_servers)
    admin.apply(catalog)
    yield scoped
    admin.delete(admin.matching(catalog.prefix))


def _raw(services: Services, topic: str, expected: int, timeout_s: float = 60.0) -> list[bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": services.bootstrap_servers,
            "group.id": f"raw-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(values) < expected and time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=0.5):
                value = message.value()
                if message.error() is None and value is not None:
                    values.append(value)
    finally:
        consumer.close()
    return values


def _score_live(world: FraudWorld, registry_url: str, poison: bytes) -> int:
    """The engine and the Kafka scorer over the live day, one record in the other framing among them; returns how
    many records the scorer consumed."""
    contracts = world.contracts
    with live_pipeline(world, registry_url) as (_service, stream):
        with EventProducer(world.services.bootstrap_servers, contracts, linger_ms=1) as out:
            for i, record in enumerate(world.live_tx):
                out.send("transactions", record)
                if i == len(world.live_tx) // 2:
                    out.send_raw(contracts.topic("transactions"), contracts.key("transactions", record), poison)
        deadline = time.monotonic() + 120
        while stream.stats.consumed < len(world.live_tx) + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        return int(stream.stats.consumed)


def test_engine_scorer_and_predictions_speak_the_confluent_wire_format(
    services: Services, confluent: Contracts, registry: RunningRegistry, tmp_path: Path
) -> None:
    assert isinstance(confluent.framing, ConfluentFraming)
    world = build_world(services, confluent, tmp_path, schema_registry_url=registry.url)
    assert isinstance(world.app.contracts.framing, ConfluentFraming)  # the composition root's contracts
    single_object = Contracts.default().serde("transactions").encode(world.live_tx[0])
    consumed = _score_live(world, registry.url, single_object)
    n_live = len(world.live_tx)
    assert consumed == n_live + 1

    # every prediction is on the topic, in the Confluent framing, with an id the registry gave for its subject
    topic = confluent.topic("predictions")
    values = _raw(services, topic, n_live)
    assert len(values) == n_live
    ids = {HEADER.unpack_from(v)[1] for v in values}
    assert all(v[0] == 0 for v in values)
    assert ids == {registry.state.subjects[f"{topic}-value"][-1]}
    # so are the inputs the producers wrote and the engine's feature log
    for logical in ("transactions", "labels", "feature-log"):
        full = confluent.topic(logical)
        head = _raw(services, full, 1)
        assert head and head[0][0] == 0, logical
        assert HEADER.unpack_from(head[0])[1] in registry.state.subjects[f"{full}-value"], logical
    # decoders fetched the writers' schemas by id (processes other than the writer know only the id)
    assert any(path.startswith("/schemas/ids/") for method, path in registry.state.requests if method == "GET")

    # the features are the offline engine's and the scores the champion's of them
    serde = confluent.serde("predictions")
    predictions = {int(p["event_id"]): p for p in (serde.decode(v) for v in values)}
    expected = offline_vectors(world.history_tx + world.live_tx, world.history_labels)
    champion = world.registry.load_version("fraud", world.versions[0])
    names = list(champion.feature_names)
    ids_sorted = sorted(predictions)
    for event_id in ids_sorted:
        got = predictions[event_id]["features"]
        assert all(abs(got[n] - expected[event_id][n]) <= 1e-9 for n in names), event_id
    scores = champion.scorer.predict(np.array([[expected[i][n] for n in names] for i in ids_sorted]))
    assert np.max(np.abs(np.array([predictions[i]["score"] for i in ids_sorted]) - scores)) <= 1e-9
    assert {p["model_version"] for p in predictions.values()} == {world.versions[0]}

    # the record in the other framing went to the dead letters with the reason, once per processor that read it (the
    # scorer; the engine too once it got there), and nothing else did
    raw_letters = _raw(services, confluent.topic("dead-letter"), 2, timeout_s=10)
    letters = [confluent.serde("dead-letter").decode(v) for v in raw_letters]
    processors = [letter["processor"] for letter in letters]
    assert "score-stream" in processors, letters
    assert len(processors) == len(set(processors)) <= 2, processors
    assert len({(letter["source_partition"], letter["source_offset"]) for letter in letters}) == 1, letters
    assert all("Confluent wire-format" in letter["reason"] for letter in letters), letters
