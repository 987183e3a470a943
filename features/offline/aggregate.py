"""Evaluate one view's aggregates at every query (an event and its time), for all queries at once.

The window of a query at ``t`` is ``(t - (w + d), t - d]`` over placement time; an event of a ``known_by`` source
also needs ``known <= t``. Two paths:

* **fast** — no ``known_by``, or ``known - placement`` the same constant ``c`` for every event of the source (the
  handbook's labels: 7 days). Then ``known <= t`` is ``placement <= t - c`` and the window is the slice
  ``(t - (w + d), t - max(d, c)]`` found by two searches; COUNT is ``hi - lo``, SUM / MEAN use per-entity prefix
  sums, MIN / MAX a sparse table, LAST and TIME_SINCE_LAST index the slice's end. O(q log n) per window.
* **general** — ``known - placement`` varies (realistic label delays), and DISTINCT_COUNT always: every event of
  every query's slice is gathered (in chunks of ``CHUNK`` events), filtered by ``known <= t`` and reduced per query.
  Exact, but O(sum of the slices' sizes): the events in the window per query, summed over queries.

Equal times: with ``d == 0`` (and ``c <= 0``) a query of the trigger topic on its own source takes, of the events at
exactly ``t``, only those up to itself in (time, id) order; every other query takes all of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from slipstream.features.base import Agg, Aggregate, Window
from slipstream.features.offline.index import SortedIndex
from slipstream.features.offline.inputs import F64, I64, Bools

CHUNK = 1 << 21  # events gathered at once on the general path (~50 MB of temporaries)
_US_PER_S = 1e6


@dataclass(frozen=True)
class Queries:
    """The times at which a view is computed, sorted by (entity, time): one per event applied to the view."""

    entity: I64
    time: I64
    tie_keys: I64
    trigger: Bools  # the query is an event of the trigger topic
    topic: I64  # which source of the view the event comes from (-1: a trigger event the view does not read)
    row: I64  # the event's row in its topic frame

    def __len__(self) -> int:
        return len(self.time)


class Evaluator:
    """Aggregates over one source index for one query set; window searches are shared between features."""

    def __init__(self, index: SortedIndex, queries: Queries, self_positions: I64 | None) -> None:
        """``self_positions``: when the source is the trigger topic, each query event's position in ``index``."""
        self.index = index
        self.queries = queries
        self.self_positions = self_positions
        self._searches: dict[int, I64] = {}
        self._through: I64 | None = None

    def _le(self, offset: int) -> I64:
        if offset not in self._searches:
            q = self.queries
            self._searches[offset] = self.index.count_le(q.entity, q.time - offset)
        return self._searches[offset]

    def _up_to_self(self) -> I64:
        """Upper ends for ``d == 0`` on the trigger's own source: trigger queries stop at themselves."""
        if self._through is None:
            hi = self._le(0).copy()
            own = self.self_positions
            if own is not None:
                q = self.queries
                mine = own >= 0
                hi[mine] = own[mine] + 1
                other = q.trigger & ~mine
                if other.any():
                    hi[other] = self.index.count_through(q.entity[other], q.time[other], q.tie_keys[other])
            self._through = hi
        return self._through

    def bounds(self, window: Window) -> tuple[I64, I64, bool]:
        """``lo``, ``hi`` of each query's slice, and whether ``known <= t`` must still be checked per event."""
        delay = self.index.delay
        general = delay is None
        top = window.delay_us if delay is None else max(window.delay_us, delay)
        lo = self._le(window.reach_us)
        hi = self._up_to_self() if top == 0 and self.self_positions is not None else self._le(top)
        return lo, np.maximum(hi, lo), general

    def evaluate(self, feature: Aggregate) -> F64:
        lo, hi, general = self.bounds(feature.window)
        if general or feature.agg is Agg.DISTINCT_COUNT:
            return self._gathered(feature, lo, hi, general)
        return self._sliced(feature, lo, hi)

    # ---- fast path ----------------------------------------------------------------------------------------------
    def _sliced(self, feature: Aggregate, lo: I64, hi: I64) -> F64:
        agg, index, size = feature.agg, self.index, hi - lo
        if agg is Agg.COUNT:
            return size.astype(np.float64)
        out = np.full(len(lo), feature.default, dtype=np.float64)
        if agg is Agg.TIME_SINCE_LAST:
            last = hi - 1
            if self.self_positions is not None:
                last = np.where(last == self.self_positions, last - 1, last)
            has = last >= lo
            out[has] = (self.queries.time[has] - index.time[last[has]]) / _US_PER_S
            return out
        field = feature.field or ""
        has = size > 0
        if agg is Agg.SUM or agg is Agg.MEAN:
            total = index.window_sum(field, lo, hi)
            out[has] = total[has] / size[has] if agg is Agg.MEAN else total[has]
        elif agg is Agg.MIN or agg is Agg.MAX:
            pick = np.minimum if agg is Agg.MIN else np.maximum
            out[has] = index.extreme(field, lo, hi, pick)[has]
        else:  # LAST
            out[has] = index.values(field)[hi[has] - 1]
        return out

    # ---- general path -------------------------------------------------------------------------------------------
    def _gathered(self, feature: Aggregate, lo: I64, hi: I64, check_known: bool) -> F64:
        q, index = self.queries, self.index
        out = np.empty(len(lo), dtype=np.float64)
        for start, stop, local, pos in _gather(lo, hi - lo):
            keep: Bools | None = None
            if check_known:
                keep = index.known[pos] <= q.time[start:stop][local]
            if feature.agg is Agg.TIME_SINCE_LAST and self.self_positions is not None:
                other = pos != self.self_positions[start:stop][local]
                keep = other if keep is None else keep & other
            if keep is not None:
                local, pos = local[keep], pos[keep]
            out[start:stop] = self._reduce(feature, local, pos, q.time[start:stop])
        return out

    def _reduce(self, feature: Aggregate, local: I64, pos: I64, time: I64) -> F64:
        """One value per query from its kept events (``local``: query number, ascending; ``pos``: event)."""
        n, agg, index = len(time), feature.agg, self.index
        counts = np.bincount(local, minlength=n)
        if agg is Agg.COUNT:
            return counts.astype(np.float64)
        out = np.full(n, feature.default, dtype=np.float64)
        has = counts > 0
        ends = np.cumsum(counts)
        if agg is Agg.TIME_SINCE_LAST:
            out[has] = (time[has] - index.time[pos[ends[has] - 1]]) / _US_PER_S
            return out
        field = feature.field or ""
        if agg is Agg.DISTINCT_COUNT:
            codes, width = index.codes(field)
            pairs = np.unique(local * (width + 1) + codes[pos])
            out[has] = np.bincount(pairs // (width + 1), minlength=n)[has]
            return out
        values = index.values(field)[pos]
        if agg is Agg.SUM or agg is Agg.MEAN:
            total = np.bincount(local, weights=values, minlength=n)
            out[has] = total[has] / counts[has] if agg is Agg.MEAN else total[has]
        elif agg is Agg.MIN or agg is Agg.MAX:
            pick = np.minimum if agg is Agg.MIN else np.maximum
            out[has] = pick.reduceat(values, (ends - counts)[has])
        else:  # LAST
            out[has] = values[ends[has] - 1]
        return out


def _gather(lo: I64, size: I64) -> Iterator[tuple[int, int, I64, I64]]:
    """Chunks of queries ``[start, stop)`` with, for every event of their slices, its query (local) and position."""
    size = np.maximum(size, 0)
    ends = np.cumsum(size)
    start = 0
    while start < len(size):
        done = int(ends[start - 1]) if start else 0
        stop = max(int(np.searchsorted(ends, done + CHUNK, side="right")), start + 1)
        sizes = size[start:stop]
        local = np.repeat(np.arange(stop - start, dtype=np.int64), sizes)
        first = np.cumsum(sizes) - sizes
        pos = np.arange(len(local), dtype=np.int64) + np.repeat(lo[start:stop] - first, sizes)
        yield start, stop, local, pos
        start = stop
