"""The Kafka front end's collector: automatic collection off while it runs, young passes between batches, full
passes only when idle and not more often than asked."""

from __future__ import annotations

import gc
import weakref

from slipstream.serving.collector import ScheduledCollector


class _Node:
    loop: object = None


def test_automatic_collection_is_off_inside_and_restored_after() -> None:
    assert gc.isenabled()
    with ScheduledCollector():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_young_generations_are_collected_after_a_batch_once_enough_is_pending() -> None:
    with ScheduledCollector(young_threshold=100, young_every_events=10**9) as collector:
        junk = [[i] for i in range(1_000)]  # 1,000 new tracked containers
        assert gc.get_count()[0] >= 100
        collector.after_batch()
        assert collector.young == 1
        assert gc.get_count()[0] < 100
        collector.after_batch()  # nothing pending: no pass
        assert collector.young == 1
        del junk


def test_young_generations_are_collected_every_so_many_events_even_when_little_seems_pending() -> None:
    old = [[i] for i in range(3_000)]
    gc.collect(1)  # long-lived, as kept states are
    with ScheduledCollector(young_threshold=10**9, young_every_events=100) as collector:
        for i in range(3_000):
            old[i] = [i, i]  # replace each: the pending count stays near zero while young objects pile up
        assert gc.get_count()[0] < 100
        collector.after_batch(60)
        assert collector.young == 0
        collector.after_batch(40)  # 100 events handled since the last pass
        assert collector.young == 1
        assert len(gc.get_objects(0)) < 100
        collector.after_batch(99)
        assert collector.young == 1
    del old


def test_cyclic_garbage_is_freed_by_the_idle_full_pass_and_no_more_often_than_asked() -> None:
    with ScheduledCollector(young_threshold=10**9, young_every_events=10**9, full_every_s=0.0) as collector:
        node = _Node()
        node.loop = node
        alive = weakref.ref(node)
        gc.collect(1)  # promote it out of the young generations, as a long-lived cycle would be
        del node
        collector.after_batch()
        assert alive() is not None  # reference counting cannot free a cycle, and nothing collected it yet
        collector.when_idle()
        assert collector.full == 1
        assert alive() is None
    with ScheduledCollector(full_every_s=3600) as rare:
        rare.when_idle()
        assert rare.full == 0


def test_under_load_that_never_pauses_a_full_pass_still_comes() -> None:
    now = [0.0]
    with ScheduledCollector(
        young_threshold=10**9, young_every_events=10**9, full_at_most_s=600.0, clock=lambda: now[0]
    ) as collector:
        node = _Node()
        node.loop = node
        alive = weakref.ref(node)
        gc.collect(1)
        del node
        for second in range(0, 600, 10):  # a batch every 10 s, never idle
            now[0] = float(second)
            collector.after_batch()
        assert collector.full == 0 and alive() is not None
        now[0] = 600.0
        collector.after_batch()
        assert collector.full == 1 and alive() is None


def test_collection_stays_off_if_it_was_off_before() -> None:
    gc.disable()
    try:
        with ScheduledCollector():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
