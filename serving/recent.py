"""Read-your-writes for the Kafka path: events this worker scored that the online store may not show yet.

The engine applies an event to Redis a few milliseconds after it arrives; the scorer reads the same topic. A card
used twice within those milliseconds would be scored the second time without the first. Transactions are keyed by
entity, so every event of an entity reaches the same scorer worker: it remembers what it scored and adds it to the
state it reads. An event is forgotten once the store shows it (the ring already held its id) or after ``horizon_s``
of wall time, whichever comes first; the horizon only needs to exceed the engine's lag.

:meth:`RecentEvents.state` also keeps the states it built, by key, with the stored bytes each was built from
(least recently used first out, at most ``max_states``). While the store still holds the same bytes for a key — the
engine has not written that entity since — the kept state already holds every event remembered for the key (each
was applied to it when it was scored), so it is used as it is: no decoding and no re-applying of the remembered
events. This is what keeps the scorer's cost per event flat while the engine lags behind it under load. Any change
of the stored bytes starts again from them. A kept state costs ~10 KB (the bytes and the decoded rings) at the
simulator's density. One difference from rebuilding: an event remembered longer than the horizon (an engine lagging
more than that) stays in a kept state until the store's bytes change or the state is evicted.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from slipstream.features.base import SourceSpec
from slipstream.features.windows import EntityState


class RecentEvents:
    def __init__(
        self, horizon_s: float = 30.0, *, max_states: int = 20_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.horizon_s = horizon_s
        self.max_states = max_states
        self._clock = clock
        self._events: dict[bytes, list[tuple[float, Mapping[str, Any]]]] = {}
        self._states: OrderedDict[bytes, tuple[bytes | None, EntityState]] = OrderedDict()
        self._last_sweep = clock()
        self.confirmed = 0  # forgotten because the store showed them
        self.expired = 0  # forgotten by age
        self.reused = 0  # states used as kept: the store held the same bytes
        self.rebuilt = 0  # states decoded from the store (and the remembered events applied)

    def __len__(self) -> int:
        return sum(len(v) for v in self._events.values())

    def state(self, key: bytes, stored: bytes | None, source: SourceSpec) -> EntityState:
        """The state of ``key``: what the store holds (``stored``, its bytes) with the remembered events added.

        The caller applies the event it scores to the returned state and :meth:`remember`\\ s it, so that the kept
        state stays equal to the stored one plus every remembered event.
        """
        kept = self._states.get(key)
        if kept is not None and kept[0] == stored:
            self._states.move_to_end(key)
            self.reused += 1
            return kept[1]
        state = EntityState.from_bytes(stored) if stored else EntityState()
        self.merge(key, state, source)
        self._states[key] = (stored, state)
        self._states.move_to_end(key)
        if len(self._states) > self.max_states:
            self._states.popitem(last=False)
        self.rebuilt += 1
        return state

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
