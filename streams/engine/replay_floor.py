"""How far back a restart can read again, per partition: the oldest event time at or after the offset the broker has
committed for its input. Pure bookkeeping, no I/O.

A stage prunes its state no further back than what a replayed event still needs (:meth:`StageProcessor.horizon`),
and a replay starts at the last offset the broker took. So the floor moves on only with a commit the broker has
acknowledged, and only past the offsets it covers: events applied while the commit was in flight, or at offsets a
commit stopped short of (an output still waiting for a watermark), keep theirs. A commit that failed or never ran is
never confirmed.

Bound: per (input topic, partition), a sliding-window minimum over the uncommitted events (offsets and times both
increasing along it, so an event older than a later one is dropped on arrival); at most one entry per event consumed
since the last confirmed commit, usually a handful.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping


class ReplayFloors:
    def __init__(self) -> None:
        self._windows: dict[int, dict[str, deque[tuple[int, int]]]] = {}  # partition -> topic -> (offset, time)
        self._loose: dict[int, int] = {}  # partition -> oldest time consumed without an offset (no broker: tests)

    def consumed(self, partition: int, time_us: int, position: tuple[str, int] | None = None) -> None:
        """An event placed at ``time_us`` was consumed on ``partition``, at ``position`` = (input topic, offset):
        a restart before a commit past that offset reads it again."""
        if position is None:
            old = self._loose.get(partition)
            self._loose[partition] = time_us if old is None else min(old, time_us)
            return
        topic, offset = position
        window = self._windows.setdefault(partition, {}).setdefault(topic, deque())
        while window and window[-1][1] >= time_us:
            window.pop()  # never the minimum again: this event is later in the log and no newer
        window.append((offset, time_us))

    def floor(self, partition: int) -> int | None:
        """The oldest time a replay of ``partition`` can bring back (``None``: nothing uncommitted there)."""
        times = [window[0][1] for window in self._windows.get(partition, {}).values() if window]
        loose = self._loose.get(partition)
        if loose is not None:
            times.append(loose)
        return min(times) if times else None

    def committed(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """The broker took these (input topic, partition) -> next offset to read: what lies before them will not be
        replayed."""
        for (topic, partition), at in offsets.items():
            window = self._windows.get(partition, {}).get(topic)
            while window and window[0][0] < at:
                window.popleft()

    def committed_all(self, partitions: Iterable[int]) -> None:
        """Everything consumed so far on ``partitions`` is committed (a caller without offsets)."""
        for partition in partitions:
            self._windows.pop(partition, None)
            self._loose.pop(partition, None)

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions this worker no longer owns: their next owner replays from the committed offsets."""
        self.committed_all(partitions)

    def size(self) -> int:
        """Entries held (the bound above)."""
        return sum(len(w) for windows in self._windows.values() for w in windows.values()) + len(self._loose)


__all__ = ["ReplayFloors"]
