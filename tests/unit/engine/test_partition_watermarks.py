"""A direct stage refuses as late, after a restart or a hand-over, exactly what a worker that never stopped refuses:
the newest time per input partition travels with the commits (``partition_watermarks``), and a restore resumes from
the pair of the commit it resumed at, not from the newest the previous worker reached past it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from slipstream.streams.engine.internal import state_key_parts, watermark_key, watermark_source
from slipstream.streams.engine.partition_watermarks import MAX_PAIRS, PartitionWatermarks
from slipstream.streams.engine.processor import StageProcessor
from slipstream.streams.engine.topology import topology_for

S = 1_000_000
TOPIC = "p.transactions"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_watermark_keys_never_collide_with_state_keys() -> None:
    key = watermark_key("transactions")
    assert watermark_source(key) == "transactions"
    assert watermark_source(b'["customer_spending",7]') is None
    assert state_key_parts(b'["customer_spending",7]') == ("customer_spending", (7,))


def test_a_commit_checkpoints_the_newest_time_before_it_and_an_acknowledgement_drops_older_pairs() -> None:
    wm = PartitionWatermarks()
    for offset, t in [(0, 100), (1, 300), (2, 200)]:
        assert wm.admit("transactions", 0, t, 150, (TOPIC, offset)) is None
    assert wm.get("transactions", 0) == 300
    assert wm.checkpoint({(TOPIC, 0): 3}) == [(0, watermark_key("transactions"), orjson.dumps([(3, 300)]))]
    assert wm.checkpoint({(TOPIC, 0): 3}) == []  # nothing new: no record
    assert wm.admit("transactions", 0, 500, 150, (TOPIC, 3)) is None
    (record,) = wm.checkpoint({(TOPIC, 0): 4})
    assert orjson.loads(record[2]) == [[3, 300], [4, 500]]  # the pair of the commit not acknowledged yet stays
    wm.committed({(TOPIC, 0): 4})
    assert wm.admit("transactions", 0, 600, 150, (TOPIC, 4)) is None
    (record,) = wm.checkpoint({(TOPIC, 0): 5})
    assert orjson.loads(record[2]) == [[4, 500], [5, 600]]


def test_late_is_more_than_the_lateness_behind_the_newest() -> None:
    wm = PartitionWatermarks()
    assert wm.admit("transactions", 0, 1_000, 100, (TOPIC, 0)) is None
    assert wm.admit("transactions", 0, 900, 100, (TOPIC, 1)) is None  # exactly the lateness behind: in time
    assert wm.admit("transactions", 0, 899, 100, (TOPIC, 2)) == 1_000
    assert wm.admit("labels", 0, 10, 100, ("p.labels", 0)) is None  # each input partition on its own
    assert wm.get("transactions", 0) == 1_000


def test_no_pair_for_a_commit_short_of_what_was_read_or_of_a_partition_never_read() -> None:
    wm = PartitionWatermarks()
    wm.admit("transactions", 0, 100, 0, (TOPIC, 9))
    assert wm.checkpoint({(TOPIC, 0): 9, (TOPIC, 1): 4}) == []  # offset 9 itself was read: its time is after it


def test_pairs_stay_bounded_while_commits_go_unanswered() -> None:
    wm = PartitionWatermarks()
    for offset in range(500):
        wm.admit("transactions", 0, offset, 0, (TOPIC, offset))
        records = wm.checkpoint({(TOPIC, 0): offset + 1})
    pairs = orjson.loads(records[-1][2])
    assert len(pairs) == MAX_PAIRS
    assert pairs[0] == [1, 0] and pairs[-1] == [500, 499]  # the oldest, which the broker may hold, and the newest


def test_a_restore_resumes_from_the_pair_of_the_commit_it_resumes_at() -> None:
    before = PartitionWatermarks()
    before.restore(0, "transactions", orjson.dumps([(3, 300), (7, 900)]))
    assert before.admit("transactions", 0, 150, 100, (TOPIC, 3)) == 300  # the commit at 7 never landed: resumed at 3
    after = PartitionWatermarks()
    after.restore(0, "transactions", orjson.dumps([(3, 300), (7, 900)]))
    assert after.admit("transactions", 0, 750, 100, (TOPIC, 8)) == 900  # 7 was a transaction marker: first event 8
    older = PartitionWatermarks()
    older.restore(0, "transactions", orjson.dumps([(3, 300)]))
    assert older.admit("transactions", 0, 5, 100, (TOPIC, 1)) is None  # resumed before any pair: nothing known


def test_the_pair_resumed_at_is_written_again_until_a_later_commit_is_acknowledged() -> None:
    wm = PartitionWatermarks()
    wm.restore(0, "transactions", orjson.dumps([(3, 300), (7, 900)]))
    wm.admit("transactions", 0, 400, 100, (TOPIC, 3))
    (record,) = wm.checkpoint({(TOPIC, 0): 4})
    assert orjson.loads(record[2]) == [[3, 300], [4, 400]]  # a crash now resumes at 3 again, and finds its pair


def _tx(offset: int, seconds: int) -> dict[str, Any]:
    return {
        "transaction_id": f"t{offset}",
        "customer_id": 1,
        "terminal_id": 2,
        "amount": 10.0,
        "event_time": seconds * S,
    }


def _run(processor: StageProcessor, stream: list[tuple[int, int]]) -> list[str]:
    """Feed ``(offset, seconds)`` events of partition 0; the ids refused as late."""
    late: list[str] = []
    for offset, seconds in stream:
        record = _tx(offset, seconds)
        processor.on_event(0, "transactions", record, ref=record["transaction_id"], position=(TOPIC, offset))
        late += [ref for ref, _ in processor.drain(NOW).late]
    return late


def test_a_worker_restarted_at_the_commit_refuses_what_one_that_never_stopped_refuses() -> None:
    """The old worker commits at 2 (newest 2,000 s), reads on to 3,000 s, plans a commit at 5 that never lands and
    dies. Lateness 100 s: 1,850 s at offset 2 is late against 2,000 s, 1,950 s at 3 is not (it would be against
    3,000 s), 2,850 s at 5 is late against 3,000 s."""
    topology = topology_for("fraud")
    stage = topology.stage("customer")
    stream = [(0, 1_000), (1, 2_000), (2, 1_850), (3, 1_950), (4, 3_000), (5, 2_850)]
    never_stopped = _run(StageProcessor(topology, stage, lateness_us=100 * S), stream)
    assert never_stopped == ["t2", "t5"]

    old = StageProcessor(topology, stage, lateness_us=100 * S)
    assert _run(old, stream[:2]) == []
    changelog: dict[bytes, bytes] = {}
    for _p, key, value in old.checkpoint({(TOPIC, 0): 2}):
        changelog[key] = value
    old.committed_offsets({(TOPIC, 0): 2})
    assert _run(old, stream[2:5]) == ["t2"]
    for _p, key, value in old.checkpoint({(TOPIC, 0): 5}):  # written and flushed; the commit itself never lands
        changelog[key] = value

    restarted = StageProcessor(topology, stage, lateness_us=100 * S)
    for key, value in changelog.items():
        restarted.restore(0, key, value)
    assert _run(restarted, stream[2:]) == never_stopped  # resumed at 2 with 2,000 s, not the 3,000 s read past it

    forgetful = StageProcessor(topology, stage, lateness_us=100 * S)  # what a restart did before: nothing known
    assert _run(forgetful, stream[2:]) == ["t5"]  # took 1,850 s: not what the worker that never stopped did


def test_an_internal_stage_checkpoints_nothing() -> None:
    topology = topology_for("fraud")
    assert StageProcessor(topology, topology.stage("terminal")).checkpoint({("x", 0): 5}) == []
