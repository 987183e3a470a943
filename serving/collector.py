"""When ``score-stream`` runs Python's cyclic garbage collector: between batches, not in the middle of one.

``score-stream`` keeps tens of thousands of decoded entity states (:class:`~serving.recent.RecentEvents`). With
automatic collection, each pass over the old generation walked all of them and stalled scoring for 100-200 ms,
which dominated the end-to-end p99 at 1k events/s. While the front end runs, automatic collection is off. After
a batch, once ``young_threshold`` allocations are pending, the two young generations are collected; their
survivors, such as new states, move to the old generation. That takes well under a millisecond. The old generation
holds only cyclic garbage: everything else is freed by reference counting. It is collected when the input has been
idle and at least ``full_every_s`` have passed, or, under load that never pauses, at the first batch after
``full_at_most_s``.

Pending allocations alone under-count the young generation here. Python's count is allocations *minus*
deallocations, and every kept state that is replaced frees an old one: the count stayed near the threshold while
30,000-70,000 new objects piled up, and each pass over them took 10-50 ms (measured at 1k events/s). So a young
pass also comes after every ``young_every_events`` handled events, whatever the count says: a few thousand objects,
a fraction of a millisecond.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable


class ScheduledCollector:
    def __init__(
        self,
        young_threshold: int = 5_000,
        young_every_events: int = 100,
        full_every_s: float = 60.0,
        full_at_most_s: float = 600.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.young_threshold = young_threshold
        self.young_every_events = young_every_events
        self._events = 0  # handled since the last young pass
        self.full_every_s = full_every_s
        self.full_at_most_s = full_at_most_s
        self.young = 0  # passes over the young generations
        self.full = 0  # full passes
        self._clock = clock
        self._was_enabled = True
        self._last_full = clock()

    def __enter__(self) -> ScheduledCollector:
        self._was_enabled = gc.isenabled()
        gc.disable()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._was_enabled:
            gc.enable()

    def after_batch(self, events: int = 1) -> None:
        """After a batch of ``events`` handled events."""
        self._events += events
        if self._clock() - self._last_full >= self.full_at_most_s:
            self._collect_all()
        elif self._events >= self.young_every_events or gc.get_count()[0] >= self.young_threshold:
            gc.collect(1)
            self.young += 1
            self._events = 0

    def when_idle(self) -> None:
        if self._clock() - self._last_full >= self.full_every_s:
            self._collect_all()

    def _collect_all(self) -> None:
        gc.collect()
        self._events = 0
        self.full += 1
        self._last_full = self._clock()
