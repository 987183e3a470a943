"""What a later stage knows of its upstream partitions, per partition of its own: pure bookkeeping, no I/O.

Every partition of a first stage broadcasts watermark markers to every partition of the next stage's input: its
*watermark* (everything up to that time has been sent; ``IDLE``: it is read to its end and nothing waits there) and
its *floor* (nothing older will be sent, a replay after a restart included). From them a later stage knows when an
output is due (:meth:`UpstreamMarks.frontier`) and how far back its state must reach (:meth:`UpstreamMarks.floor`).
Bound: one entry per (own partition, source, upstream partition).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

NO_WATERMARK = -(2**62)
IDLE = 2**62


class UpstreamMarks:
    def __init__(self, gating: Iterable[str], slack: Mapping[str, int]) -> None:
        """``gating``: the sources the stage's views read; ``slack``: how far behind an output's time each may be."""
        self._gating = tuple(gating)
        self._slack = dict(slack)
        self._marks: dict[int, dict[tuple[str, int], int]] = {}  # partition -> (source, upstream) -> watermark
        self._floors: dict[int, dict[tuple[str, int], int]] = {}  # partition -> (source, upstream) -> floor
        self._upstream_n: dict[str, int] = {}

    def marker(
        self, partition: int, source: str, upstream: int, upstream_n: int, time_us: int, *, floor: bool = True
    ) -> None:
        """Upstream partition ``upstream`` of ``source`` (one of ``upstream_n``) has sent everything up to ``time_us``
        to ``partition``. ``floor``: the watermark also bounds how old its next events can be (markers without floors
        of their own; a marker's floors are lower when the upstream would send a replayed tail again)."""
        self._upstream_n[source] = upstream_n
        marks = self._marks.setdefault(partition, {})
        old = marks.get((source, upstream), NO_WATERMARK)
        # Idle holds only while it lasts: an upstream partition that gets events again waits for its watermark again.
        marks[(source, upstream)] = time_us if old >= IDLE else max(old, time_us)
        if floor and time_us < IDLE:  # "idle" says nothing is waiting upstream, not how old the next event can be
            self.floor_at(partition, source, upstream, time_us)

    def floor_at(self, partition: int, source: str, upstream: int, time_us: int) -> None:
        """Upstream partition ``upstream`` of ``source`` will send ``partition`` nothing older than ``time_us``."""
        floors = self._floors.setdefault(partition, {})
        floors[(source, upstream)] = max(floors.get((source, upstream), NO_WATERMARK), time_us)

    def frontier(self, partition: int) -> int:
        """Time up to which outputs on ``partition`` are due: every gating source has reached it on every upstream
        partition, less its slack (a source read only through windows delayed by 7 days need only reach ``t - 7 d``)."""
        marks = self._marks.get(partition, {})
        frontier = IDLE
        for source in self._gating:
            n = self._upstream_n.get(source)
            if n is None:
                return NO_WATERMARK
            reached = min(marks.get((source, up), NO_WATERMARK) for up in range(n))
            if reached < IDLE:
                frontier = min(frontier, reached + self._slack[source])
        return frontier

    def floor(self, partition: int) -> int | None:
        """The oldest time any gating source may still send ``partition`` (``None``: some upstream partition has not
        said yet)."""
        floors = self._floors.get(partition, {})
        lowest = IDLE
        for source in self._gating:
            n = self._upstream_n.get(source)
            if n is None:
                return None
            for upstream in range(n):
                mark = floors.get((source, upstream))
                if mark is None:
                    return None
                lowest = min(lowest, mark)
        return lowest

    def forget(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self._marks.pop(partition, None)
            self._floors.pop(partition, None)


__all__ = ["IDLE", "NO_WATERMARK", "UpstreamMarks"]
