"""How far back a restart can read again, per partition: the oldest event time consumed since the last *confirmed*
commit. Pure bookkeeping, no I/O.

A stage prunes its state no further back than what a replayed event still needs (:meth:`StageProcessor.horizon`),
and a replay starts at the last offset the broker took. So the floor may only move on when a commit is known to have
landed, and only for what that commit covers:

- :meth:`ReplayFloors.plan` closes the events consumed so far into a plan (a token) when a runtime computes its commit
  points; events consumed after it belong to the next plan, whatever order the commit and the next batch run in.
- :meth:`ReplayFloors.confirmed` is called with the token once the broker has acknowledged that commit, for the
  partitions it committed to the end; a commit that failed, or was skipped, is never confirmed, and its floors stay
  until a later commit of the same partitions is.

Bound: one entry per partition for the open plan, plus one per plan not confirmed yet; beyond
:data:`MAX_PLANNED` unconfirmed plans the two oldest are merged (the merged floor is the lower of the two, so it is
never too high: it only waits for the later of the two tokens).
"""

from __future__ import annotations

from collections.abc import Iterable

MAX_PLANNED = 16


class ReplayFloors:
    def __init__(self) -> None:
        self._open: dict[int, int] = {}  # partition -> oldest time consumed since the last plan
        self._planned: list[tuple[int, dict[int, int]]] = []  # (token, floors) of unconfirmed plans, oldest first
        self._floor: dict[int, int] = {}  # partition -> the minimum over all of the above
        self._token = 0

    def consumed(self, partition: int, time_us: int) -> None:
        """An event placed at ``time_us`` was consumed on ``partition``: a restart before its commit reads it again."""
        old = self._open.get(partition)
        if old is None or time_us < old:
            self._open[partition] = time_us
        floor = self._floor.get(partition)
        if floor is None or time_us < floor:
            self._floor[partition] = time_us

    def floor(self, partition: int) -> int | None:
        """The oldest time a replay of ``partition`` can bring back (``None``: nothing is uncommitted there)."""
        return self._floor.get(partition)

    def plan(self) -> int:
        """Close what was consumed so far into a plan; its token confirms it later."""
        self._token += 1
        if self._open:
            self._planned.append((self._token, self._open))
            self._open = {}
        if len(self._planned) > MAX_PLANNED:
            (_, older), (token, newer) = self._planned[0], self._planned[1]
            merged = dict(older)
            for partition, time_us in newer.items():
                merged[partition] = min(time_us, merged.get(partition, time_us))
            self._planned[:2] = [(token, merged)]
        return self._token

    def confirmed(self, token: int | None, partitions: Iterable[int]) -> None:
        """The broker took the commit planned as ``token``, and it covers everything consumed on ``partitions`` up to
        that plan; ``token=None``: everything consumed so far (a caller that commits without planning)."""
        done = set(partitions)
        if not done:
            return
        if token is None:
            token = self._token + 1
            for partition in done:
                self._open.pop(partition, None)
        kept: list[tuple[int, dict[int, int]]] = []
        for planned_token, floors in self._planned:
            if planned_token <= token:
                for partition in done:
                    floors.pop(partition, None)
            if floors:
                kept.append((planned_token, floors))
        self._planned = kept
        self._recompute(done)

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions this worker no longer owns: their next owner replays from the committed offsets."""
        gone = set(partitions)
        for partition in gone:
            self._open.pop(partition, None)
        for _, floors in self._planned:
            for partition in gone:
                floors.pop(partition, None)
        self._planned = [(t, f) for t, f in self._planned if f]
        self._recompute(gone)

    def _recompute(self, partitions: set[int]) -> None:
        for partition in partitions:
            times = [floors[partition] for _, floors in self._planned if partition in floors]
            if partition in self._open:
                times.append(self._open[partition])
            if times:
                self._floor[partition] = min(times)
            else:
                self._floor.pop(partition, None)

    def unconfirmed(self) -> int:
        """Plans not confirmed yet (bounded by :data:`MAX_PLANNED`)."""
        return len(self._planned)


__all__ = ["MAX_PLANNED", "ReplayFloors"]
