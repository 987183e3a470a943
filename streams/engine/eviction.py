"""Which entities a stage may forget: the pure eviction rule, and an index that finds them without a scan.

An entity's state may go once no output the stage can still compute reaches any event of it. An output at time
``t`` reads only events placed in ``(t - reach, t]`` (``reach``: the view's longest window plus its delay, see
``features/base.py``), so an entity whose every event lies at or before ``H - reach`` contributes nothing to any
output at ``t >= H``. The stage knows such an ``H`` per partition — its *horizon* (see
:meth:`~slipstream.streams.engine.processor.StageProcessor.horizon`): the oldest time an event it can still accept,
a pending output or a replay after a crash can have. All of it is event time, so a replay evicts exactly what
production evicted, whatever the batch boundaries.

The rule, per state key ``k`` of a view with reach ``R``, on partition ``p`` with horizon ``H(p)``::

    deadline(k) = max(newest event time known, newest placement time in any ring) + R
    evict k once  ceil(deadline(k) / bucket) * bucket <= H(p)

Rounding the deadline up to a whole ``bucket`` (an hour of event time by default) is what makes the sweep cheap:
keys are filed by bucket, a sweep pops only buckets that have wholly expired, and each key is filed once per drain
that changed it. A key is never evicted early, only up to one bucket late.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from slipstream.streams.engine.exceptions import EngineError

HOUR_US = 3600 * 1_000_000


def evictable(deadline_us: int, horizon_us: int, bucket_us: int = HOUR_US) -> bool:
    """The rule itself: ``deadline`` (newest event + reach) rounded up to a whole bucket is at or before ``horizon``."""
    return -(-deadline_us // bucket_us) * bucket_us <= horizon_us


class IdleIndex:
    """State keys filed per partition under the bucket of their deadline; :meth:`expired` pops whole buckets.

    Memory: one entry per live key (a key moves between buckets, it is never filed twice). Time: O(1) per
    :meth:`file`, and a sweep costs the keys it returns plus a heap pop per expired bucket.
    """

    def __init__(self, bucket_us: int = HOUR_US) -> None:
        if bucket_us <= 0:
            msg = f"the eviction bucket must be a positive number of microseconds, got {bucket_us}"
            raise EngineError(msg)
        self.bucket_us = bucket_us
        self._where: dict[bytes, tuple[int, int]] = {}  # key -> (partition, bucket)
        self._buckets: dict[int, dict[int, set[bytes]]] = {}  # partition -> bucket -> keys
        self._order: dict[int, list[int]] = {}  # partition -> heap of bucket numbers (lazily cleaned)

    def __len__(self) -> int:
        return len(self._where)

    def file(self, partition: int, key: bytes, deadline_us: int) -> None:
        """``key`` (of ``partition``) may go once the horizon reaches ``deadline_us`` rounded up to a bucket."""
        bucket = -(-deadline_us // self.bucket_us)
        where = self._where.get(key)
        if where == (partition, bucket):
            return
        if where is not None:
            self._unfile(where, key)
        self._where[key] = (partition, bucket)
        buckets = self._buckets.setdefault(partition, {})
        keys = buckets.get(bucket)
        if keys is None:
            keys = buckets[bucket] = set()
            heapq.heappush(self._order.setdefault(partition, []), bucket)
        keys.add(key)

    def discard(self, key: bytes) -> None:
        where = self._where.pop(key, None)
        if where is not None:
            self._unfile(where, key)

    def _unfile(self, where: tuple[int, int], key: bytes) -> None:
        partition, bucket = where
        keys = self._buckets[partition][bucket]
        keys.discard(key)
        if not keys:
            del self._buckets[partition][bucket]  # its number stays in the heap until a sweep passes it

    def partitions(self) -> list[int]:
        """The partitions holding filed keys."""
        return [p for p, buckets in self._buckets.items() if buckets]

    def expired(self, partition: int, horizon_us: int) -> list[bytes]:
        """Every key of ``partition`` whose bucket has wholly passed ``horizon_us``, removed from the index."""
        order = self._order.get(partition)
        if not order:
            return []
        limit = horizon_us // self.bucket_us  # bucket b holds deadlines in ((b-1)*w, b*w]: gone once b*w <= horizon
        buckets = self._buckets[partition]
        out: list[bytes] = []
        while order and order[0] <= limit:
            keys = buckets.pop(heapq.heappop(order), None)
            if keys:
                out.extend(keys)
        for key in out:
            del self._where[key]
        return sorted(out)  # deterministic order: the changelog's tombstones come out the same in every replay

    def forget(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            for keys in self._buckets.pop(partition, {}).values():
                for key in keys:
                    del self._where[key]
            self._order.pop(partition, None)


__all__ = ["HOUR_US", "IdleIndex", "evictable"]
