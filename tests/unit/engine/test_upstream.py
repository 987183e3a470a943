"""What a later stage knows of its upstream partitions: frontier and floor from the markers."""

from __future__ import annotations

from slipstream.streams.engine.upstream import IDLE, NO_WATERMARK, UpstreamMarks


def _marks() -> UpstreamMarks:
    return UpstreamMarks(("labels", "transactions"), {"labels": 0, "transactions": 100})


def test_nothing_is_due_and_no_floor_is_known_until_every_upstream_partition_has_spoken() -> None:
    marks = _marks()
    assert marks.frontier(0) == NO_WATERMARK and marks.floor(0) is None
    marks.marker(0, "labels", 0, 2, 500)
    marks.marker(0, "transactions", 0, 2, 500)
    marks.marker(0, "transactions", 1, 2, 500)
    assert marks.frontier(0) == NO_WATERMARK and marks.floor(0) is None  # labels partition 1 has not
    marks.marker(0, "labels", 1, 2, 300)
    assert marks.frontier(0) == 300  # labels must reach the time itself, transactions 100 less
    assert marks.floor(0) == 300
    assert marks.frontier(1) == NO_WATERMARK  # per partition of this stage


def test_explicit_floors_stay_lower_than_the_watermark_and_never_go_back() -> None:
    marks = _marks()
    for source in ("labels", "transactions"):
        for up in range(2):
            marks.marker(0, source, up, 2, 1_000, floor=False)
            marks.floor_at(0, source, up, 400)  # a restart would send events from 400 again
    assert marks.frontier(0) == 1_000 and marks.floor(0) == 400
    marks.floor_at(0, "labels", 0, 200)
    assert marks.floor(0) == 400


def test_idle_releases_a_source_only_until_its_next_marker() -> None:
    marks = _marks()
    for source in ("labels", "transactions"):
        for up in range(2):
            marks.marker(0, source, up, 2, 1_000)
    marks.marker(0, "labels", 0, 2, IDLE)
    marks.marker(0, "labels", 1, 2, IDLE)
    assert marks.frontier(0) == 1_100 and marks.floor(0) == 1_000  # idle moves no floor
    marks.marker(0, "labels", 0, 2, 1_050)
    assert marks.frontier(0) == 1_050
    marks.forget([0])
    assert marks.frontier(0) == NO_WATERMARK
