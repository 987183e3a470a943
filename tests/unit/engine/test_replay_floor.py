"""Replay floors move on only with a commit the broker took, and only past the offsets it covers."""

from __future__ import annotations

import random

from slipstream.streams.engine.replay_floor import ReplayFloors
from slipstream.streams.engine.stage_io import CommitPlan


def test_events_at_or_after_the_committed_offset_keep_their_floor() -> None:
    floors = ReplayFloors()
    floors.consumed(0, 500, ("tx", 10))
    floors.consumed(0, 100, ("tx", 11))  # applied while the commit at 11 was in flight: not covered by it
    floors.committed({("tx", 0): 11})
    assert floors.floor(0) == 100


def test_a_commit_short_of_the_end_keeps_what_follows_it() -> None:
    """An internal stage commits up to its oldest output still waiting; a replay reads everything after it again,
    also events already sent on, which can be older than the waiting one."""
    floors = ReplayFloors()
    floors.consumed(0, 900, ("fwd", 4))  # still waiting for a watermark: the commit stops here
    floors.consumed(0, 300, ("fwd", 5))  # already sent on, older
    floors.consumed(0, 950, ("fwd", 6))
    floors.committed({("fwd", 0): 4})
    assert floors.floor(0) == 300
    floors.committed({("fwd", 0): 6})
    assert floors.floor(0) == 950
    floors.committed({("fwd", 0): 7})
    assert floors.floor(0) is None


def test_a_failed_commit_moves_nothing_and_a_later_one_covers_it() -> None:
    floors = ReplayFloors()
    floors.consumed(1, 300, ("tx", 0))
    floors.consumed(1, 700, ("tx", 1))
    assert floors.floor(1) == 300  # the commit at 1 failed: never confirmed
    floors.committed({("tx", 1): 2})
    assert floors.floor(1) is None


def test_every_input_of_a_partition_counts() -> None:
    floors = ReplayFloors()
    floors.consumed(0, 40, ("labels", 3))
    floors.consumed(0, 60, ("tx", 3))
    floors.committed({("tx", 0): 4})
    assert floors.floor(0) == 40
    floors.committed({("labels", 0): 4})
    assert floors.floor(0) is None


def test_forgotten_partitions_and_a_commit_of_everything_hold_nothing() -> None:
    floors = ReplayFloors()
    floors.consumed(2, 5, ("tx", 0))
    floors.consumed(3, 5)  # no offset (a caller without a broker)
    floors.forget({2})
    floors.committed_all({3})
    assert floors.floor(2) is None and floors.floor(3) is None and floors.size() == 0


def test_the_floor_is_the_oldest_uncommitted_time_and_the_window_stays_small() -> None:
    """Against a plain model (every consumed event kept) over random runs: the same floor after every step, and never
    more entries held than events not committed."""
    rng = random.Random(5)
    for _ in range(30):
        floors = ReplayFloors()
        model: list[tuple[str, int, int, int]] = []  # (topic, partition, offset, time)
        next_offset = {(t, p): 0 for t in ("tx", "labels") for p in range(3)}
        committed = dict.fromkeys(next_offset, 0)
        clock = 0
        for _ in range(400):
            if rng.random() < 0.8:
                topic, p = rng.choice(list(next_offset))
                clock += rng.randrange(0, 50)
                t = clock - rng.randrange(0, 120)  # mostly later, sometimes older than the one before
                floors.consumed(p, t, (topic, next_offset[(topic, p)]))
                model.append((topic, p, next_offset[(topic, p)], t))
                next_offset[(topic, p)] += 1
            else:
                key = rng.choice(list(next_offset))
                at = rng.randrange(committed[key], next_offset[key] + 1)  # commits only move forward
                committed[key] = at
                floors.committed({key: at})
                model = [e for e in model if not ((e[0], e[1]) == key and e[2] < at)]
            for p in range(3):
                want = min((t for _, q, _, t in model if q == p), default=None)
                assert floors.floor(p) == want
        assert floors.size() <= max(len(model), 1)


def test_a_plan_is_covered_by_the_offsets_the_broker_took() -> None:
    plan = CommitPlan({("tx", 0): 10, ("labels", 0): 4, ("tx", 1): 7})
    assert plan.covered({("tx", 0): 10, ("labels", 0): 5, ("tx", 1): 6}) == ({0}, {1})
    assert plan.covered({("tx", 0): 10}) == (set(), {0, 1})  # an input of partition 0 was not committed
    assert plan.covered({("tx", 0): 12, ("labels", 0): 4, ("tx", 1): 9}) == ({0, 1}, set())
