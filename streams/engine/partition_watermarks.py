"""What a direct stage calls late, kept the same across restarts and hand-overs. Pure state, no I/O.

A direct stage (reading producer topics) refuses an event of input ``source`` on partition ``p`` that is older than
the newest event of that input partition so far, less the allowed lateness. "So far" must mean the same after a
restart: the worker that resumes at the committed offset ``c`` must refuse exactly what a worker that never stopped
would have, so it needs the newest time among the events *before* ``c``. Not the newest it can find: the worker
before it may have read (and written state for) events past ``c`` that are read again now.

So the watermark travels with the commits. Each time a runtime plans a commit at ``c``, :meth:`checkpoint` records
``(c, newest time before c)`` and returns a changelog record holding every such pair not yet behind an acknowledged
commit; the runtime writes it, flushes, and only then commits. Whatever offset the group holds after a crash, the
changelog therefore holds its pair (the commit was planned, so its pair was written first). On restore the pairs are
kept aside (:meth:`restore`), and the first event read on the partition picks the pair at the largest offset not
after it (:meth:`newest`). An acknowledged commit at ``c`` drops the pairs before ``c`` (:meth:`committed`).

Bounded: per input partition, one newest time and the pairs of the commits planned since the last acknowledged one,
at most :data:`MAX_PAIRS`; the changelog's compaction keeps one record per input partition.

Not exact in one case, and then lenient: a previous owner expelled from the group mid-revoke may still write its
record after the new owner's (its commit is refused), and a later restore then resumes from an older pair: it may
accept an event the worker before it refused, never refuse one it accepted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import orjson

from slipstream.streams.engine.internal import watermark_key

# Pairs kept per input partition while commits go unanswered (the broker down): the oldest (at or before what the
# broker holds) and the newest; a commit landing at a pair dropped between them resumes from an older one (lenient:
# it may accept an event the worker before it refused, never refuse one it accepted).
MAX_PAIRS = 64
Position = tuple[str, int]  # (input topic, offset) of a consumed event
Mark = tuple[str, int]  # (source, partition)


class PartitionWatermarks:
    def __init__(self) -> None:
        self._newest: dict[Mark, int] = {}
        self._source: dict[tuple[str, int], str] = {}  # (input topic, partition) -> source
        self._last: dict[tuple[str, int], int] = {}  # (input topic, partition) -> offset of the last event read
        self._pairs: dict[tuple[str, int], list[tuple[int, int]]] = {}  # (input topic, partition) -> (offset, newest)
        self._restored: dict[Mark, list[tuple[int, int]]] = {}

    def get(self, source: str, partition: int) -> int | None:
        """The newest event time of ``source`` on ``partition`` so far (``None``: none read since the start)."""
        return self._newest.get((source, partition))

    def admit(
        self, source: str, partition: int, time_us: int, lateness_us: int, position: Position | None
    ) -> int | None:
        """The event of ``source`` at ``time_us``, read at ``position``: ``None`` when it is in time (the newest time
        moves to it if it is newer), else the newest time it is more than ``lateness_us`` behind (late).

        On the first event after a restore, the newest time is first taken from the restored pair at the largest
        offset not after ``position`` (the commit this worker resumed at)."""
        mark = (source, partition)
        if position is not None:
            where = (position[0], partition)
            if self._restored:
                self._resume(mark, where, position[1])
            if where not in self._last:
                self._source[where] = source
            self._last[where] = position[1]
        newest = self._newest.get(mark)
        if newest is not None:
            if time_us < newest - lateness_us:
                return newest
            if time_us <= newest:
                return None
        self._newest[mark] = time_us
        return None

    def _resume(self, mark: Mark, where: tuple[str, int], offset: int) -> None:
        restored = self._restored.pop(mark, None)
        if restored and mark not in self._newest:
            behind = [pair for pair in restored if pair[0] <= offset]
            if behind:
                self._newest[mark] = behind[-1][1]
                self._pairs[where] = [behind[-1]]  # still the pair a crash now resumes at

    def checkpoint(self, offsets: Mapping[tuple[str, int], int]) -> list[tuple[int, bytes, bytes]]:
        """A commit at ``offsets`` ((input topic, partition) -> next offset) is planned: the changelog records
        ``(partition, key, value)`` to write before it. A partition gets a pair only when every event before its
        offset was read here (its newest time is then exact); a record goes out only when its pairs changed."""
        records: list[tuple[int, bytes, bytes]] = []
        for (topic, partition), at in offsets.items():
            last, source = self._last.get((topic, partition)), self._source.get((topic, partition))
            newest = None if source is None else self._newest.get((source, partition))
            if last is None or source is None or newest is None or at <= last:
                continue
            pairs = self._pairs.setdefault((topic, partition), [])
            if pairs and pairs[-1] == (at, newest):
                continue
            pairs.append((at, newest))
            if len(pairs) > MAX_PAIRS:  # commits unanswered for long: keep the oldest and the newest ones
                del pairs[1 : len(pairs) - MAX_PAIRS + 1]
            records.append((partition, watermark_key(source), orjson.dumps(pairs)))
        return records

    def committed(self, offsets: Mapping[tuple[str, int], int]) -> None:
        """The broker took a commit at ``offsets``: no restart resumes before them, so older pairs are dropped."""
        for key, at in offsets.items():
            pairs = self._pairs.get(key)
            if not pairs:
                continue
            kept = [pair for pair in pairs if pair[0] >= at]
            older = [pair for pair in pairs if pair[0] < at]
            if older and (not kept or kept[0][0] != at):
                kept.insert(0, older[-1])  # no pair at ``at`` itself: the newest before it is where it resumes
            self._pairs[key] = kept

    def restore(self, partition: int, source: str, value: bytes | None) -> None:
        """One changelog record of :meth:`checkpoint` (the newest per key wins)."""
        if value is None:
            self._restored.pop((source, partition), None)
            return
        self._restored[(source, partition)] = sorted((int(at), int(t)) for at, t in orjson.loads(value))

    def forget(self, partitions: Iterable[int]) -> None:
        gone = set(partitions)
        for table in (self._newest, self._source, self._last, self._pairs, self._restored):
            for key in [k for k in table if k[1] in gone]:
                del table[key]


__all__ = ["MAX_PAIRS", "PartitionWatermarks"]
