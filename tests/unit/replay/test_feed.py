"""The window feed's chunking and model swaps, with the pipeline and the producer replaced by recorders (pure)."""

from __future__ import annotations

import json
from typing import Any

from slipstream.replay.feed import MAX_CHUNK, WindowFeed
from slipstream.replay.scope import GateRule, gate_rules
from slipstream.replay.slice_file import SliceRecord
from slipstream.schemas.exceptions import DecodeError

S = 1_000_000


class Pipeline:
    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []
        self.version = "1"

    def serving(self) -> str:
        return self.version

    def drain(self, consumed: int) -> None:
        self.log.append(("drain", consumed))

    def swap(self, model: str, version: str) -> None:
        self.version = version
        self.log.append(("swap", version))

    def wait(self, seconds: float) -> None:
        self.log.append(("wait", seconds))

    def settle_engine(self) -> None:
        self.log.append(("engine", None))


class Producer:
    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    def send(self, record: SliceRecord) -> None:
        self.pipeline.log.append(("send", record.offset))

    def flush(self) -> None:
        return None


class Json:
    def decode(self, data: bytes | None) -> dict[str, Any]:
        if not data or not data.startswith(b"{"):
            msg = "truncated"
            raise DecodeError(msg)
        decoded: dict[str, Any] = json.loads(data)
        return decoded


RULES = {
    "transactions": GateRule("event_time", None, ("customer_id", "terminal_id")),
    "labels": GateRule("tx_event_time", "event_time", ("customer_id", "terminal_id")),
}


def _tx(offset: int, customer: int, t_s: float, terminal: int = 0) -> SliceRecord:
    value = {
        "transaction_id": offset,
        "customer_id": customer,
        "terminal_id": terminal + 1000 * offset,
        "event_time": int(t_s * S),
    }
    if terminal:
        value["terminal_id"] = terminal
    return SliceRecord("transactions", 0, offset, offset, 1, b"k", json.dumps(value).encode())


def _feed(pipeline: Pipeline, versions: dict[str, str] | None = None) -> WindowFeed:
    return WindowFeed(
        pipeline,  # type: ignore[arg-type]
        Producer(pipeline),  # type: ignore[arg-type]
        {"transactions": Json(), "labels": Json()},  # type: ignore[dict-item]
        RULES,
        "transactions",
        "transaction_id",
        lateness_s=2.0,
        versions=versions,
        model="fraud",
        speed=None,
        on_progress=lambda _n: None,
    )


def test_a_chunk_closes_before_an_entity_moves_more_than_half_the_lateness() -> None:
    pipeline = Pipeline()
    records = [_tx(0, 1, 0.0), _tx(1, 2, 500.0), _tx(2, 1, 0.9), _tx(3, 1, 1.5), _tx(4, 3, 9000.0)]
    stats = _feed(pipeline).run(iter(records))
    # customer 1 at 0.0 then 1.5 s: more than 1 s apart, so record 3 starts a new chunk; other customers never do
    assert pipeline.log == [("send", 0), ("send", 1), ("send", 2), ("drain", 3), ("send", 3), ("send", 4), ("drain", 5)]
    assert (stats.chunks, stats.scored_inputs, stats.records) == (2, 5, 5)


def test_a_label_known_late_moves_its_entities_by_its_known_time() -> None:
    pipeline = Pipeline()
    label = {"transaction_id": 0, "customer_id": 1, "terminal_id": 7, "tx_event_time": 0, "event_time": 5 * S}
    records = [
        _tx(0, 1, 0.0, terminal=7),
        SliceRecord("labels", 0, 1, 1, 1, b"k", json.dumps(label).encode()),
    ]
    _feed(pipeline).run(iter(records))
    assert pipeline.log == [("send", 0), ("drain", 1), ("send", 1), ("drain", 1)]


def test_poison_is_sent_and_counted_but_never_gates_and_max_chunk_bounds_a_chunk() -> None:
    pipeline = Pipeline()
    poison = SliceRecord("transactions", 0, 0, 0, 1, b"k", b"\\xc3\\x01trunc")
    records = [poison] + [_tx(i, i, float(i)) for i in range(1, MAX_CHUNK + 2)]
    stats = _feed(pipeline).run(iter(records))
    drains = [n for kind, n in pipeline.log if kind == "drain"]
    assert drains == [MAX_CHUNK, MAX_CHUNK + 2]
    assert stats.scored_inputs == MAX_CHUNK + 2


def test_the_recorded_version_is_swapped_in_before_its_first_event() -> None:
    pipeline = Pipeline()
    records = [_tx(0, 1, 0.0), _tx(1, 2, 100.0), _tx(2, 3, 200.0)]
    _feed(pipeline, {"0": "1", "1": "2", "2": "1"}).run(iter(records))
    assert pipeline.log == [
        ("send", 0),
        ("drain", 1),
        ("swap", "2"),
        ("send", 1),
        ("drain", 2),
        ("swap", "1"),
        ("send", 2),
        ("drain", 3),
    ]


def test_the_gate_rules_come_from_the_definitions() -> None:
    rules = gate_rules(["fraud"])
    assert rules["transactions"] == GateRule("event_time", None, ("customer_id", "terminal_id"))
    assert rules["labels"] == GateRule("tx_event_time", "event_time", ("terminal_id",))  # only the terminal reads them


def test_speed_paces_by_the_recorded_timestamps_and_scores_what_waits() -> None:
    pipeline = Pipeline()
    records = [
        SliceRecord("transactions", 0, i, 1_000 * i, 1, b"k", _tx(i, i, float(i)).value) for i in range(3)
    ]  # one second apart on the topic
    feed = _feed(pipeline)
    feed.speed = 1000.0  # a thousand times the recorded pace: a millisecond apart
    feed.run(iter(records))
    waits = [s for kind, s in pipeline.log if kind == "wait"]
    assert waits and all(0 < s <= 0.002 for s in waits)
    assert pipeline.log.index(("send", 0)) < pipeline.log.index(("drain", 1)) < pipeline.log.index(("send", 1))
    assert pipeline.log[-1] == ("drain", 3)


def test_an_event_after_a_label_of_its_entity_waits_for_the_engine() -> None:
    """The label reaches the scorer only through the engine: an event of the same terminal after it in the chunk is
    scored once the engine has applied everything published (the offline engine's "known by t")."""
    pipeline = Pipeline()
    label = {"transaction_id": 0, "customer_id": 1, "terminal_id": 7, "tx_event_time": 0, "event_time": 10 * S}
    records = [
        _tx(0, 1, 10.0, terminal=8),
        SliceRecord("labels", 0, 1, 1, 1, b"k", json.dumps(label).encode()),
        _tx(2, 2, 10.2, terminal=9),  # another terminal: no wait
        _tx(3, 3, 10.4, terminal=7),  # the label's terminal
    ]
    stats = _feed(pipeline).run(iter(records))
    assert pipeline.log == [
        ("send", 0),
        ("send", 1),
        ("send", 2),
        ("drain", 2),
        ("engine", None),
        ("send", 3),
        ("drain", 3),
    ]
    assert stats.engine_waits == 1


def test_a_label_stays_pending_across_chunks_until_the_engine_caught_up() -> None:
    pipeline = Pipeline()
    label = {"transaction_id": 0, "customer_id": 1, "terminal_id": 7, "tx_event_time": 0, "event_time": 10 * S}
    records = [
        SliceRecord("labels", 0, 0, 0, 1, b"k", json.dumps(label).encode()),
        *[_tx(i, 1000 + i, 10.0, terminal=100 + i) for i in range(1, MAX_CHUNK + 2)],  # a gate by MAX_CHUNK between
        _tx(MAX_CHUNK + 2, 99_999, 10.0, terminal=7),
        _tx(MAX_CHUNK + 3, 99_998, 10.0, terminal=7),  # the engine caught up once: no second wait
    ]
    stats = _feed(pipeline).run(iter(records))
    assert [kind for kind, _ in pipeline.log if kind in ("drain", "engine")] == ["drain", "drain", "engine", "drain"]
    assert stats.engine_waits == 1
