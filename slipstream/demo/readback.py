"""What the demo reads back while live traffic flows: the run's output topics, committed records only, each handed
to :meth:`LiveStats.on_event <slipstream.demo.stats.LiveStats.on_event>` with its broker time — the scorer's
predictions, the engine's feature vectors, the dead letters, the shadow consumer's comparisons (fraud) and rankings
(reco), the label joiner's outcomes, the drift monitor's alarms and the model events (the closed loop's
decisions). ``recommendations`` is not read: its records carry every candidate's features (tens of kB each), and
the panel needs none of it."""

from __future__ import annotations

import time

from slipstream.app import Slipstream
from slipstream.demo.stats import LiveStats
from slipstream.schemas.contracts import Contracts

READ_BACK = (
    "predictions",
    "feature-log",
    "dead-letter",
    "shadow-comparisons",
    "shadow-rankings",
    "outcomes",
    "drift",
    "model-events",
)


class ReadBack:
    """A reader of :data:`READ_BACK` from their ends (read_committed), feeding ``stats``."""

    def __init__(self, app: Slipstream, contracts: Contracts, stats: LiveStats) -> None:
        self.stats = stats
        # From the end: the feature log holds a vector of every warm-up transaction, and nothing else is ours yet.
        self._reader = app.consumer(
            READ_BACK, from_beginning=False, contracts=contracts, config={"isolation.level": "read_committed"}
        )
        self._topics = {contracts.topic(t): t for t in READ_BACK}

    def poll(self, timeout_s: float = 0.1) -> float:
        """Read what came (waiting at most ``timeout_s``), count it; return the time it was read at."""
        batch = self._reader.poll_batch(max_records=2000, timeout=timeout_s)
        now = time.perf_counter()
        for event in batch.events:
            self.stats.on_event(self._topics[event.topic], event.value, event.timestamp_ms, now)
        return now

    def close(self) -> None:
        self._reader.close()
