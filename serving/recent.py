"""Read-your-writes for the Kafka path: events this worker scored that the online store may not show yet.

The engine applies an event to Redis a few milliseconds after it arrives; the scorer reads the same topic. A card
used twice within those milliseconds would be scored the second time without the first. Transactions are keyed by
entity, so every event of an entity reaches the same scorer worker: it remembers what it scored and adds it to the
state it reads. An event is forgotten once the store shows it (the ring already held its id) or after ``horizon_s``
of wall time, whichever comes first; the horizon only needs to exceed the engine's lag.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from features.base import SourceSpec
from features.windows import EntityState


class RecentEvents:
    def __init__(self, horizon_s: float = 30.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.horizon_s = horizon_s
        self._clock = clock
        self._events: dict[bytes, list[tuple[float, Mapping[str, Any]]]] = {}
        self._last_sweep = clock()
        self.confirmed = 0  # forgotten because the store showed them
        self.expired = 0  # forgotten by age

    def __len__(self) -> int:
        return sum(len(v) for v in self._events.values())

    def merge(self, key: bytes, state: EntityState, source: SourceSpec) -> int:
        """Apply the remembered events of ``key`` to ``state`` (read from the store); return how many were missing."""
        remembered = self._events.get(key)
        if not remembered:
            return 0
        cutoff = self._clock() - self.horizon_s
        kept: list[tuple[float, Mapping[str, Any]]] = []
        added = 0
        for at, record in remembered:
            if state.apply(source, record, 0, 0, prune=False):
                added += 1
                if at >= cutoff:
                    kept.append((at, record))
                else:
                    self.expired += 1
            else:
                self.confirmed += 1
        if kept:
            self._events[key] = kept
        else:
            del self._events[key]
        return added

    def remember(self, key: bytes, record: Mapping[str, Any]) -> None:
        now = self._clock()
        self._events.setdefault(key, []).append((now, record))
        if now - self._last_sweep > self.horizon_s:
            self._sweep(now - self.horizon_s)
            self._last_sweep = now

    def _sweep(self, cutoff: float) -> None:
        for key in list(self._events):
            kept = [(at, r) for at, r in self._events[key] if at >= cutoff]
            self.expired += len(self._events[key]) - len(kept)
            if kept:
                self._events[key] = kept
            else:
                del self._events[key]
