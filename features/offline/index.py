"""One source's events of one view, sorted by (entity, placement time, tie key), with vectorised window searches.

Every event gets one int64 *composite key* ``entity * span + offset(time)``, increasing in (entity, time). A window
bound ``time <= x`` of entity ``e`` is then one ``np.searchsorted`` over the whole log: it returns the global
position just past entity ``e``'s last event placed at or before ``x``, so ``hi - lo`` is a window's count and the
slice ``[lo, hi)`` its events. The offset is ``time - min time`` when ``n_entities * time range`` fits in 62 bits,
else the time's rank among the distinct times (always fits). Events of one entity at one time are ordered by tie
key, as the rings order them by id.

Sums use per-entity prefix sums (pandas' grouped cumulative sum, Kahan-compensated), so a window sum is the
difference of two prefixes of the *same* entity and agrees with ``math.fsum`` to a few ulps of the entity's total.
Minimum and maximum use a sparse table built one level at a time: O(n log W) time for windows of up to W events,
O(n) extra memory.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from slipstream.features.exceptions import FeatureError
from slipstream.features.offline.inputs import F64, I64

KEY_LIMIT = 1 << 62  # composite keys stay below this (int64 with headroom)


class SortedIndex:
    """The events (rows of a topic frame) of one view source after its where filter, in (entity, time, tie) order."""

    def __init__(
        self,
        frame: pd.DataFrame,
        rows: I64,
        entity: I64,
        time: I64,
        known: I64,
        tie_keys: I64,
        n_entities: int,
    ) -> None:
        self.frame = frame
        self.n_entities = n_entities
        self._unique_times: I64 | None = None
        if len(time):
            self._base, top = int(time.min()), int(time.max())
        else:
            self._base, top = 0, 0
        self._range = top - self._base
        if (n_entities + 1) * (self._range + 2) >= KEY_LIMIT:
            self._unique_times = np.unique(time)
            self._range = len(self._unique_times) - 1
        self._span = self._range + 2
        if (n_entities + 1) * self._span >= 1 << 63:
            msg = f"too many entities ({n_entities}) x distinct times ({self._span}) for int64 composite keys"
            raise FeatureError(msg)
        keys = entity * self._span + self._offset(time)
        order = np.argsort(keys)
        sorted_keys = np.take(keys, order)
        tied = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])
        if len(tied):  # order events of one entity at one time by tie key, as the rings do
            block = np.unique(np.concatenate((tied, tied + 1)))
            sub = order[block]
            order[block] = sub[np.lexsort((tie_keys[sub], sorted_keys[block]))]
        self.rows: I64 = np.take(rows, order)
        self.entity: I64 = np.take(entity, order)
        self.time: I64 = np.take(time, order)
        self.known: I64 = np.take(known, order)
        self.tie_keys: I64 = np.take(tie_keys, order)
        self.keys: I64 = sorted_keys
        self.starts: I64 = np.searchsorted(self.entity, np.arange(n_entities + 1, dtype=np.int64)).astype(np.int64)
        # known - placement when it is the same for every event (None: it varies, the general path is needed)
        delays = self.known - self.time
        self.delay: int | None = 0
        if len(delays):
            self.delay = int(delays[0]) if bool((delays == delays[0]).all()) else None
        self._values: dict[str, F64] = {}
        self._prefix: dict[str, tuple[F64, F64]] = {}
        self._codes: dict[str, tuple[I64, int]] = {}
        self._ties: tuple[I64, I64, I64] | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def _offset(self, time: I64) -> I64:
        if self._unique_times is not None:
            ranks: I64 = np.searchsorted(self._unique_times, time, side="right").astype(np.int64) - 1
            return ranks
        clipped: I64 = np.clip(time - self._base, -1, self._range)
        return clipped

    def positions_of(self, n_rows: int) -> I64:
        """For each row of the topic frame, its position here (-1 when it is not here)."""
        out = np.full(n_rows, -1, dtype=np.int64)
        out[self.rows] = np.arange(len(self.rows), dtype=np.int64)
        return out

    def count_le(self, entity: I64, bound: I64) -> I64:
        """Global position just past ``entity``'s last event placed at or before ``bound``."""
        query = entity * self._span + self._offset(bound)
        found: I64 = np.searchsorted(self.keys, query, side="right").astype(np.int64)
        return found

    def count_through(self, entity: I64, time: I64, tie_key: I64) -> I64:
        """Global position just past ``entity``'s last event before ``(time, tie_key)`` in (time, tie key) order."""
        before = self.count_le(entity, time - 1)
        out = before.copy()
        at = self.count_le(entity, time) > before
        if at.any():
            blocks, ranked, unique = self._tie_table()
            width = len(unique) + 1
            query = blocks[before[at]] * width + np.searchsorted(unique, tie_key[at], side="right") - 1
            out[at] = np.searchsorted(ranked, query, side="right")
        return out

    def _tie_table(self) -> tuple[I64, I64, I64]:
        if self._ties is None:
            new = np.ones(len(self.keys), dtype=np.int64)
            new[1:] = self.keys[1:] != self.keys[:-1]
            blocks = np.cumsum(new) - 1
            unique = np.unique(self.tie_keys)
            ranked = blocks * (len(unique) + 1) + np.searchsorted(unique, self.tie_keys)
            self._ties = (blocks, ranked.astype(np.int64), unique)
        return self._ties

    # ---- values -------------------------------------------------------------------------------------------------
    def values(self, field: str) -> F64:
        if field not in self._values:
            column = self.frame[field]
            try:
                self._values[field] = np.take(column.to_numpy(dtype=np.float64), self.rows)
            except (TypeError, ValueError) as exc:
                msg = f"field {field!r} must be numeric to aggregate, got dtype {column.dtype}"
                raise FeatureError(msg) from exc
        return self._values[field]

    def codes(self, field: str) -> tuple[I64, int]:
        """Dense codes of a field's raw values (for distinct counts) and how many distinct values there are."""
        if field not in self._codes:
            codes, uniques = pd.factorize(self.frame[field].to_numpy()[self.rows], use_na_sentinel=False)
            self._codes[field] = (codes.astype(np.int64), len(uniques))
        return self._codes[field]

    def window_sum(self, field: str, lo: I64, hi: I64) -> F64:
        """Sum of ``field`` over ``[lo, hi)`` (inside one entity each) from that entity's prefix sums.

        ``top[i]`` is the entity's inclusive prefix sum at ``i - 1``, ``bottom`` the same but 0 at every entity's
        first event, so a window sum is ``top[hi] - bottom[lo]`` (meaningless, and ignored, when ``hi == lo``).
        """
        if field not in self._prefix:
            grouped = pd.Series(self.values(field)).groupby(self.entity, sort=False)
            top = np.zeros(len(self) + 1, dtype=np.float64)
            top[1:] = np.asarray(grouped.cumsum(), dtype=np.float64)
            bottom = top.copy()
            bottom[self.starts] = 0.0
            self._prefix[field] = (top, bottom)
        top, bottom = self._prefix[field]
        out: F64 = top[hi] - bottom[lo]
        return out

    def extreme(self, field: str, lo: I64, hi: I64, pick: np.ufunc) -> F64:
        """``pick`` (np.minimum / np.maximum) over ``[lo, hi)``; NaN where the range is empty."""
        out = np.full(len(lo), np.nan)
        size = hi - lo
        filled = size > 0
        if not filled.any():
            return out
        level = np.zeros(len(lo), dtype=np.int64)
        level[filled] = np.frexp(size[filled].astype(np.float64))[1] - 1  # floor(log2(size))
        table = self.values(field)
        top = int(level.max())
        for j in range(top + 1):
            chosen = filled & (level == j)
            if chosen.any():
                out[chosen] = pick(table[lo[chosen]], table[hi[chosen] - (1 << j)])
            if j < top:
                table = pick(table[: -(1 << j)], table[(1 << j) :])
        return out
