"""`slipstream drift`: the drift monitor as a Kafka processor — champion predictions, labelled outcomes and shadow
comparisons in; every closed window on ``drift-windows`` and every alarm on ``drift``, exactly once
(:mod:`slipstream.monitoring.transactional`), the monitors' state in a compacted changelog.

A window's statistics need every prediction of the window, whatever its customer, so one worker reads every
partition: the drift monitor is one process per deployment (its CPU per event is in ``slipstream bench drift``).
A second worker started under the same ``--worker-id`` fences the first (a standby that takes over), and one under
another id is refused with an error, since it would split the windows.

Event time is the clock. The watermark is the smallest, over the ``predictions`` partitions, of the newest event time
read on each; a partition read to its end does not hold it back (an idle partition would stop every window from
closing; "read to its end" for five seconds, since a consumer sees new records only once fetched). A window closes
when the watermark passes its end; a prediction older than the oldest open window is
counted late and dropped (the monitor keeps up to eight windows open, so partitions read unevenly lose nothing).

One :class:`~slipstream.monitoring.drift.monitor.DriftMonitor` per (model, champion version) that has a drift
reference in its model card (``reference.drift``, written at registration); predictions of a version without one are
counted in ``unmonitored``. State bound: each monitor holds its open windows' histograms (subjects × bins × 2) and
its change detectors; monitors of versions that sent nothing for eight windows are dropped (with a tombstone).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from slipstream.monitoring.drift.monitor import DriftMonitor, DriftSettings
from slipstream.monitoring.exceptions import MonitoringError
from slipstream.monitoring.figures import micros
from slipstream.monitoring.hosts import HostFactory
from slipstream.monitoring.transactional import Emitted, ProcessorStats, TransactionalProcessor
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.transport.connection import KafkaLike
from slipstream.schemas.transport.consumer import ConsumedEvent

log = logging.getLogger(__name__)

INPUTS = ("predictions", "outcomes", "shadow-comparisons")
FIELDS = {
    "predictions": ("prediction_id", "model_name", "model_version", "role", "event_time", "features", "score"),
    "outcomes": ("status", "role", "model_name", "model_version", "event_time", "label_time", "score", "label"),
    "shadow-comparisons": ("model_name", "champion_version", "challenger_version", "event_time", "flip"),
}
CHANGELOG = "drift.changelog"
IDLE_S = 5.0  # wall seconds a predictions partition must sit at its end before it stops holding the watermark
STATE_PARTITION = 0

CardSource = Callable[[str, str], Mapping[str, Any] | None]


@dataclass(frozen=True, slots=True)
class DriftRunSettings:
    monitor: DriftSettings = field(default_factory=DriftSettings)
    group_id: str = "slipstream-drift"
    worker: str = "0"


@dataclass(slots=True)
class DriftCounts:
    predictions: int = 0
    outcomes: int = 0
    comparisons: int = 0
    unmonitored: int = 0
    windows: int = 0
    alarms: int = 0


def _key(name: str, version: str) -> bytes:
    return f"{name}@{version}".encode()


class DriftHandler:
    """The :class:`~slipstream.monitoring.transactional.Handler` of the drift monitor (every partition, one state)."""

    def __init__(self, contracts: Contracts, settings: DriftSettings, cards: CardSource) -> None:
        self.settings = settings
        self.cards = cards
        self._logical = {contracts.topic(t): t for t in INPUTS}
        self.monitors: dict[tuple[str, str], DriftMonitor] = {}
        self._no_reference: set[tuple[str, str]] = set()
        self._restored: dict[bytes, bytes] = {}
        self.partitions: set[int] = set()
        self._newest: dict[int, int] = {}  # predictions partition -> newest event time read (µs)
        self._idle: frozenset[int] = frozenset()
        self._end_since: dict[int, float] = {}  # predictions partition -> when it was first seen at its end
        self._last_seen: dict[tuple[str, str], int] = {}
        self._dirty: set[tuple[str, str]] = set()
        self._dropped: set[tuple[str, str]] = set()
        self.counts = DriftCounts()

    # --- partitions ---
    def assign(self, partition: int, restored: Mapping[bytes, bytes]) -> None:
        self.partitions.add(partition)
        if partition == STATE_PARTITION:
            self._restored = dict(restored)
            self.monitors.clear()

    def revoke(self, partition: int) -> None:
        self.partitions.discard(partition)
        self._newest.pop(partition, None)
        if partition == STATE_PARTITION:
            self.monitors.clear()
            self._restored = {}

    # --- monitors ---
    def _monitor(self, name: str, version: str) -> DriftMonitor | None:
        key = (name, version)
        found = self.monitors.get(key)
        if found is not None or key in self._no_reference:
            return found
        card = self.cards(name, version)
        reference = (card or {}).get("reference", {}).get("drift") if card else None
        if not reference:
            log.warning("%s version %s has no drift reference in its model card: not monitored", name, version)
            self._no_reference.add(key)
            return None
        saved = self._restored.pop(_key(name, version), None)
        try:
            if saved is not None:
                monitor = DriftMonitor.from_bytes(saved, reference, self.settings)
            else:
                monitor = DriftMonitor(reference, self.settings, model_name=name, model_version=version)
        except MonitoringError as exc:  # e.g. a reference with too few training windows to calibrate on
            log.warning("%s version %s cannot be monitored: %s", name, version, exc)
            self._no_reference.add(key)
            return None
        self.monitors[key] = monitor
        return monitor

    def _watermark(self) -> int | None:
        """The slowest busy partition's newest event time; None while an assigned partition that is not idle has
        sent nothing yet (it could hold anything)."""
        if any(p not in self._newest and p not in self._idle for p in self.partitions):
            return None
        busy = [t for p, t in self._newest.items() if p not in self._idle]
        if busy:
            return min(busy)
        return max(self._newest.values()) if self._newest else None

    # --- records ---
    def process(self, events: Sequence[ConsumedEvent]) -> Emitted:
        if STATE_PARTITION not in self.partitions:
            msg = (
                "the drift monitor must read every partition (a window needs all its predictions); another worker "
                "of its group holds some: run one `slipstream drift` per deployment"
            )
            raise MonitoringError(msg)
        out = Emitted()
        for event in events:
            topic = self._logical[event.topic]
            value: Mapping[str, Any] = event.value
            if topic == "predictions":
                self._prediction(event.partition, value)
            elif topic == "outcomes":
                self._emit(out, self._outcome(value))
            else:
                self._emit(out, self._comparison(value))
        self._advance(out)
        return out

    def _prediction(self, partition: int, value: Mapping[str, Any]) -> None:
        self.counts.predictions += 1
        t = micros(value["event_time"])
        if t > self._newest.get(partition, -1):
            self._newest[partition] = t
        if str(value.get("role", "CHAMPION")) != "CHAMPION":
            return
        name, version = str(value["model_name"]), str(value["model_version"])
        monitor = self._monitor(name, version)
        if monitor is None:
            self.counts.unmonitored += 1
            return
        monitor.observe_prediction(t, value["features"], float(value["score"]))
        self._last_seen[(name, version)] = max(t, self._last_seen.get((name, version), t))
        self._dirty.add((name, version))

    def _outcome(self, value: Mapping[str, Any]) -> list[dict[str, Any]]:
        self.counts.outcomes += 1
        if str(value["status"]) != "LABELLED" or str(value["role"]) != "CHAMPION" or value.get("score") is None:
            return []
        monitor = self._monitor(str(value["model_name"]), str(value["model_version"]))
        if monitor is None:
            return []
        self._dirty.add((str(value["model_name"]), str(value["model_version"])))
        # the error of a prediction becomes known when its label does: the detector runs on label time
        known = value.get("label_time")
        at = micros(known) if known is not None else micros(value["event_time"])
        return monitor.observe_outcome(at, float(value["score"]), bool(value["label"]))

    def _comparison(self, value: Mapping[str, Any]) -> list[dict[str, Any]]:
        self.counts.comparisons += 1
        monitor = self._monitor(str(value["model_name"]), str(value["champion_version"]))
        if monitor is None:
            return []
        self._dirty.add((str(value["model_name"]), str(value["champion_version"])))
        return monitor.observe_comparison(
            micros(value["event_time"]), str(value["challenger_version"]), bool(value["flip"])
        )

    def _emit(self, out: Emitted, alarms: Sequence[Mapping[str, Any]]) -> None:
        now = datetime.now(UTC)
        for alarm in alarms:
            out.records.append(("drift", {**alarm, "raised_at": now}))
            self.counts.alarms += 1

    def _advance(self, out: Emitted) -> None:
        watermark = self._watermark()
        if watermark is not None:
            now = datetime.now(UTC)
            for key, monitor in self.monitors.items():
                windows, alarms = monitor.advance(watermark)
                if windows or alarms:
                    self._dirty.add(key)
                for window in windows:
                    out.records.append(("drift-windows", {**window, "closed_at": now}))
                    self.counts.windows += 1
                self._emit(out, alarms)
            # a version that sent nothing for eight windows (a champion replaced) is forgotten, its state deleted
            horizon = watermark - 8 * round(self.settings.window_s * 1_000_000)
            for key in [k for k, seen in self._last_seen.items() if seen < horizon]:
                self.monitors.pop(key, None)
                self._last_seen.pop(key, None)
                self._dirty.discard(key)
                out.changelog.append((STATE_PARTITION, _key(*key), None))
        for key in sorted(self._dirty):
            dirty = self.monitors.get(key)
            if dirty is not None:
                out.changelog.append((STATE_PARTITION, _key(*key), dirty.to_bytes()))
        self._dirty.clear()

    def at_end(self, ends: Set[tuple[str, int]]) -> Emitted:
        """A predictions partition read to its end for ``IDLE_S`` seconds stops holding the watermark back. (The
        consumer's idea of a partition's end is the high mark of its last fetch: new records not fetched yet look
        like none, for a fetch or two; a partition briefly "at its end" must not let windows close over it.)"""
        now = time.monotonic()
        at_end = {p for topic, p in ends if topic == "predictions"}
        for p in [p for p in self._end_since if p not in at_end]:
            del self._end_since[p]
        for p in at_end:
            self._end_since.setdefault(p, now)
        idle = frozenset(p for p, since in self._end_since.items() if now - since >= IDLE_S)
        if idle == self._idle:
            return Emitted()
        self._idle = idle
        out = Emitted()
        if STATE_PARTITION in self.partitions:
            self._advance(out)
        return out

    def tick(self, now_s: float) -> Emitted:
        return Emitted()  # windows close on event time, never on the wall clock


def run_drift(
    bootstrap_servers: KafkaLike,
    contracts: Contracts,
    settings: DriftRunSettings,
    cards: CardSource,
    stop: threading.Event,
    *,
    until_idle_s: float | None = None,
    host: HostFactory = TransactionalProcessor,
) -> tuple[ProcessorStats, DriftCounts]:
    """Run the drift monitor until ``stop`` (or idle for ``until_idle_s``) in ``host`` (the Kafka runtime's
    :class:`TransactionalProcessor`, or another runtime's: ``slipstream.processor_hosts``); its stats and counts."""
    handler = DriftHandler(contracts, settings.monitor, cards)
    processor = host(
        bootstrap_servers,
        contracts,
        group_id=contracts.catalog.prefix + settings.group_id,
        inputs=INPUTS,
        handler=handler,
        transactional_id=f"{contracts.catalog.prefix}{settings.group_id}-{settings.worker}",
        changelog=CHANGELOG,
        processor_name="drift",
        fields=FIELDS,
        # windows are days long: a second's batching costs nothing and saves CPU per event (one transaction, one
        # state snapshot per batch)
        max_batch=10_000,
        poll_s=0.5,
        fetch_wait_ms=1000,
        fetch_min_bytes=1024 * 1024,
    )
    try:
        stats = processor.run(stop, until_idle_s=until_idle_s)
    finally:
        processor.close()
    return stats, handler.counts
