"""Replay floors move on only with a commit the broker took, and only for what that commit covers."""

from __future__ import annotations

import random

from slipstream.streams.engine.replay_floor import MAX_PLANNED, ReplayFloors
from slipstream.streams.engine.stage_io import CommitPlan


def test_events_consumed_after_the_plan_keep_their_floor_when_the_commit_is_confirmed() -> None:
    floors = ReplayFloors()
    floors.consumed(0, 500)
    token = floors.plan()
    floors.consumed(0, 100)  # a batch applied while the commit was in flight: not covered by it
    floors.confirmed(token, {0})
    assert floors.floor(0) == 100


def test_an_unconfirmed_commit_keeps_its_floor_until_a_later_one_is_confirmed() -> None:
    floors = ReplayFloors()
    floors.consumed(1, 300)
    floors.plan()  # its commit failed (a rebalance), or never ran: never confirmed
    floors.consumed(1, 700)
    assert floors.floor(1) == 300
    later = floors.plan()
    floors.confirmed(later, {1})  # offsets only grow: the later commit covers the earlier plan too
    assert floors.floor(1) is None


def test_only_the_confirmed_partitions_move_on() -> None:
    floors = ReplayFloors()
    floors.consumed(0, 10)
    floors.consumed(1, 20)
    token = floors.plan()
    floors.confirmed(token, {1})  # partition 0 still had an output waiting: committed short of its end
    assert (floors.floor(0), floors.floor(1)) == (10, None)


def test_a_confirmation_of_an_older_token_leaves_newer_plans() -> None:
    floors = ReplayFloors()
    floors.consumed(0, 50)
    first = floors.plan()
    floors.consumed(0, 40)
    floors.plan()
    floors.confirmed(first, {0})
    assert floors.floor(0) == 40


def test_forgotten_partitions_hold_nothing() -> None:
    floors = ReplayFloors()
    floors.consumed(2, 5)
    floors.plan()
    floors.consumed(2, 3)
    floors.forget({2})
    assert floors.floor(2) is None and floors.unconfirmed() == 0


def test_without_a_token_everything_consumed_so_far_is_confirmed() -> None:
    floors = ReplayFloors()
    floors.consumed(0, 9)
    floors.plan()
    floors.consumed(0, 8)
    floors.confirmed(None, {0})
    assert floors.floor(0) is None


def test_unconfirmed_plans_are_bounded_and_the_floor_never_rises_by_merging() -> None:
    """Against a plain model (every consumed time with the token of the plan that closed it), over random runs
    where most commits fail: the floor is never above the model's, the plans kept never exceed the bound, and a
    confirmation of the newest plan clears exactly what the model clears."""
    rng = random.Random(5)
    for _ in range(50):
        floors = ReplayFloors()
        model: list[tuple[int, int, int]] = []  # (token closing it, or a big one while open, partition, time)
        open_token = 10**9
        token = 0
        for _ in range(300):
            step = rng.random()
            if step < 0.6:
                p, t = rng.randrange(3), rng.randrange(1000)
                floors.consumed(p, t)
                model.append((open_token, p, t))
            elif step < 0.9:
                token = floors.plan()
                model = [(token if tk == open_token else tk, p, t) for tk, p, t in model]
            else:
                done = set(rng.sample(range(3), rng.randrange(1, 4)))
                floors.confirmed(token, done)
                model = [(tk, p, t) for tk, p, t in model if not (p in done and tk <= token)]
            assert floors.unconfirmed() <= MAX_PLANNED
            for p in range(3):
                want = min((t for _, q, t in model if q == p), default=None)
                got = floors.floor(p)
                assert (got is None) == (want is None)
                assert got is None or want is None or got <= want
        final = floors.plan()
        floors.confirmed(final, {0, 1, 2})
        assert all(floors.floor(p) is None for p in range(3))


def test_a_plan_is_covered_by_the_offsets_the_broker_took() -> None:
    plan = CommitPlan({("tx", 0): 10, ("labels", 0): 4, ("tx", 1): 7}, {0, 1}, 1)
    assert plan.covered({("tx", 0): 10, ("labels", 0): 5, ("tx", 1): 6}) == ({0}, {1})
    assert plan.covered({("tx", 0): 10}) == (set(), {0, 1})  # an input of partition 0 was not committed
    assert plan.covered({("tx", 0): 12, ("labels", 0): 4, ("tx", 1): 9}) == ({0, 1}, set())
