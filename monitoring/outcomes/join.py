"""The delayed-label join, as pure logic: predictions, challenger scores and labels in (any order), outcomes out.

One :class:`LabelJoin` per input partition. Its state is one :class:`Entry` per event id: the scores still waiting
for their label, the ids already answered (so a re-delivered prediction is recognised), and the label once known.
A label joins every score of its event, whichever came first; a score arriving after its label is answered at
once — if it became known within the horizon (the event's time plus ``horizon_us`` plus ``grace_us``); a label known
later answers nothing and is written as ``LABEL_WITHOUT_PREDICTION`` at once, whatever the reading order. Nothing
vanishes: at the horizon (measured on the partition's event-time clock) each score still waiting becomes an
``UNLABELLED_AT_HORIZON`` outcome and a label no score claimed becomes ``LABEL_WITHOUT_PREDICTION``; the entry is
then deleted. A record arriving for an event past
its horizon is answered the same way at once.

The clock is a watermark over the three inputs: per input, the newest event time this partition has seen (predictions
and scores carry their event's time, labels the time they became known), and the clock is the *oldest* of those —
an input that is at its end (nothing more to read now; :meth:`LabelJoin.set_idle`) does not hold it back. So a
joiner catching up on a backlog, which may read one topic far ahead of another, expires nothing a slower topic could
still answer; the clock follows the stream, never the wall clock, and a replay reproduces it. (Whether an input is at
its end depends on timing: an input that goes quiet and then delivers records older than the others' progress can see
their events expired first — the engine's idle-source caveat, docs/architecture.md.)

Bound: live entries are the events of the last ``horizon + grace`` of event time on this partition; each holds
about 120 bytes plus 140 per score waiting (two models: ~400 bytes per event in memory, ~250 in the changelog). At
100 scored events/s per partition and the default 31 days that is 268M entries — more than memory: size the
horizon, the partitions and the workers together (docs/architecture.md, "The label join").
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from slipstream.features.windows import to_micros

CLOCK_KEY = b"\x00clock"
INPUTS = ("predictions", "shadow-comparisons", "labels")
NEVER = -(2**62)
LABELLED = "LABELLED"
UNLABELLED = "UNLABELLED_AT_HORIZON"
ORPHAN_LABEL = "LABEL_WITHOUT_PREDICTION"


@dataclass(slots=True)
class Scored:
    """A score waiting for (or answered by) its event's label."""

    outcome_id: str
    model_name: str
    model_version: str
    role: str
    score: float
    decision: bool
    threshold: float


@dataclass(slots=True)
class Entry:
    event_id: str
    customer_id: int
    terminal_id: int | None
    event_time_us: int
    label: bool | None = None
    label_time_us: int | None = None
    waiting: dict[str, Scored] = field(default_factory=dict)
    answered: set[str] = field(default_factory=set)

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "e": self.event_id,
                "c": self.customer_id,
                "t": self.terminal_id,
                "at": self.event_time_us,
                "l": self.label,
                "lt": self.label_time_us,
                "w": [
                    [s.outcome_id, s.model_name, s.model_version, s.role, s.score, s.decision, s.threshold]
                    for s in self.waiting.values()
                ],
                "a": sorted(self.answered),
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> Entry:
        raw = orjson.loads(data)
        waiting = {w[0]: Scored(w[0], w[1], w[2], w[3], float(w[4]), bool(w[5]), float(w[6])) for w in raw["w"]}
        return cls(raw["e"], raw["c"], raw["t"], raw["at"], raw["l"], raw["lt"], waiting, set(raw["a"]))


@dataclass(slots=True)
class JoinCounts:
    labelled: int = 0
    unlabelled: int = 0
    orphan_labels: int = 0
    duplicate_scores: int = 0
    duplicate_labels: int = 0
    conflicting_labels: int = 0


class LabelJoin:
    """The join state of one partition; every method returns the outcomes it decided (outcome-topic records)."""

    def __init__(self, horizon_us: int, grace_us: int = 0, inputs: tuple[str, ...] = INPUTS) -> None:
        self.horizon_us = horizon_us
        self.grace_us = grace_us
        self.inputs = inputs
        self.clock_us = NEVER
        self.seen: dict[str, int] = {}  # input -> newest event time read from it
        self.idle: frozenset[str] = frozenset()  # inputs at their end just now
        self.entries: dict[str, Entry] = {}
        self.counts = JoinCounts()
        self._expiry: list[tuple[int, str]] = []  # (expires at, event id); stale items are skipped
        self._dirty: set[str] = set()
        self._clock_dirty = False

    # --- state in and out ---

    def restore(self, restored: Mapping[bytes, bytes]) -> None:
        for key, value in restored.items():
            if key == CLOCK_KEY:
                clock = orjson.loads(value)
                self.clock_us, self.seen = int(clock["clock"]), {k: int(v) for k, v in clock["seen"].items()}
                continue
            entry = Entry.decode(value)
            self.entries[entry.event_id] = entry
            heapq.heappush(self._expiry, (self._deadline(entry), entry.event_id))

    def changes(self) -> Iterator[tuple[bytes, bytes | None]]:
        """Changelog entries for everything changed since the last call (None: the entry is gone)."""
        for event_id in sorted(self._dirty):
            entry = self.entries.get(event_id)
            yield event_id.encode(), None if entry is None else entry.encode()
        self._dirty.clear()
        if self._clock_dirty:
            self._clock_dirty = False
            yield CLOCK_KEY, orjson.dumps({"clock": self.clock_us, "seen": self.seen})

    def _deadline(self, entry: Entry) -> int:
        return entry.event_time_us + self.horizon_us + self.grace_us

    # --- inputs ---

    def on_prediction(self, p: Mapping[str, Any]) -> list[dict[str, Any]]:
        """A champion (or any) prediction record (prediction.avsc)."""
        scored = Scored(
            str(p["prediction_id"]),
            str(p["model_name"]),
            str(p["model_version"]),
            str(p.get("role") or "CHAMPION"),
            float(p["score"]),
            bool(p["decision"]),
            float(p["threshold"]),
        )
        at_us = _us(p["event_time"])
        out = self._advance("predictions", at_us)
        return out + self._on_score(str(p["event_id"]), int(p["customer_id"]), p.get("terminal_id"), at_us, scored)

    def on_comparison(self, c: Mapping[str, Any]) -> list[dict[str, Any]]:
        """A challenger's score from a shadow comparison (shadow_comparison.avsc)."""
        version = str(c["challenger_version"])
        scored = Scored(
            f"{c['event_id']}@{version}",
            str(c["model_name"]),
            version,
            "CHALLENGER",
            float(c["challenger_score"]),
            bool(c["challenger_decision"]),
            float(c["challenger_threshold"]),
        )
        at_us = _us(c["event_time"])
        out = self._advance("shadow-comparisons", at_us)
        return out + self._on_score(str(c["event_id"]), int(c["customer_id"]), None, at_us, scored)

    def on_label(self, label: Mapping[str, Any]) -> list[dict[str, Any]]:
        """A label record (label.avsc): the ground truth of one event, known at its ``event_time``."""
        event_id = str(label["transaction_id"])
        at_us, known_us = _us(label["tx_event_time"]), _us(label["event_time"])
        out = self._advance("labels", known_us)
        if known_us > at_us + self.horizon_us + self.grace_us:  # known past the horizon: it answers no score
            self.counts.orphan_labels += 1
            late = Entry(event_id, int(label["customer_id"]), label.get("terminal_id"), at_us)
            late.label, late.label_time_us = bool(label["is_fraud"]), known_us
            return [*out, self._outcome(late, None, ORPHAN_LABEL)]
        entry = self._entry(event_id, int(label["customer_id"]), label.get("terminal_id"), at_us)
        if entry.label is not None:
            if entry.label != bool(label["is_fraud"]):
                self.counts.conflicting_labels += 1  # the first label stands: outcomes already went out with it
            self.counts.duplicate_labels += 1
            return out
        entry.label, entry.label_time_us = bool(label["is_fraud"]), known_us
        if entry.terminal_id is None and label.get("terminal_id") is not None:
            entry.terminal_id = int(label["terminal_id"])
        if self._deadline(entry) < self.clock_us:  # its predictions, if any, were written unlabelled already
            return [*out, *self._expire(entry)]
        for scored in entry.waiting.values():
            out.append(self._outcome(entry, scored, LABELLED))
            entry.answered.add(scored.outcome_id)
        self.counts.labelled += len(entry.waiting)
        entry.waiting.clear()
        self._dirty.add(event_id)
        return out

    def _on_score(
        self, event_id: str, customer_id: int, terminal_id: Any, at_us: int, scored: Scored
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        entry = self._entry(event_id, customer_id, terminal_id, at_us)
        if scored.outcome_id in entry.answered or scored.outcome_id in entry.waiting:
            self.counts.duplicate_scores += 1
            return out
        if terminal_id is not None and entry.terminal_id is None:
            entry.terminal_id = int(terminal_id)
        if self._deadline(entry) < self.clock_us:
            entry.waiting[scored.outcome_id] = scored
            return [*out, *self._expire(entry)]
        if entry.label is not None:
            out.append(self._outcome(entry, scored, LABELLED))
            entry.answered.add(scored.outcome_id)
            self.counts.labelled += 1
        else:
            entry.waiting[scored.outcome_id] = scored
        self._dirty.add(event_id)
        return out

    def _entry(self, event_id: str, customer_id: int, terminal_id: Any, at_us: int) -> Entry:
        entry = self.entries.get(event_id)
        if entry is None:
            entry = Entry(event_id, customer_id, None if terminal_id is None else int(terminal_id), at_us)
            self.entries[event_id] = entry
            heapq.heappush(self._expiry, (self._deadline(entry), event_id))
        return entry

    # --- time ---

    def set_idle(self, idle: frozenset[str]) -> list[dict[str, Any]]:
        """The inputs at their end just now: they no longer hold the clock back (what is now due is written)."""
        self.idle = idle
        return self._move()

    def _advance(self, source: str, time_us: int) -> list[dict[str, Any]]:
        if time_us <= self.seen.get(source, NEVER):
            return []
        self.seen[source] = time_us
        self._clock_dirty = True
        return self._move()

    def _move(self) -> list[dict[str, Any]]:
        """The clock to the oldest progress of the inputs still to be read (all at their end: the newest)."""
        waiting = [self.seen.get(k, NEVER) for k in self.inputs if k not in self.idle]
        mark = min(waiting) if waiting else max(self.seen.values(), default=NEVER)
        if mark <= self.clock_us:
            return []
        self.clock_us = mark
        self._clock_dirty = True
        out: list[dict[str, Any]] = []
        while self._expiry and self._expiry[0][0] < self.clock_us:
            _, event_id = heapq.heappop(self._expiry)
            entry = self.entries.get(event_id)
            if entry is not None and self._deadline(entry) < self.clock_us:
                out.extend(self._expire(entry))
        return out

    def _expire(self, entry: Entry) -> list[dict[str, Any]]:
        """Write what the entry still owes and delete it."""
        out = [self._outcome(entry, scored, UNLABELLED) for scored in entry.waiting.values()]
        self.counts.unlabelled += len(entry.waiting)
        if entry.label is not None and not entry.answered:
            out.append(self._outcome(entry, None, ORPHAN_LABEL))
            self.counts.orphan_labels += 1
        self.entries.pop(entry.event_id, None)
        self._dirty.add(entry.event_id)
        return out

    def _outcome(self, entry: Entry, scored: Scored | None, status: str) -> dict[str, Any]:
        labelled = status != UNLABELLED and entry.label is not None
        return {
            "outcome_id": scored.outcome_id if scored is not None else f"label:{entry.event_id}",
            "status": status,
            "event_id": entry.event_id,
            "customer_id": entry.customer_id,
            "terminal_id": entry.terminal_id,
            "event_time": entry.event_time_us,
            "model_name": scored.model_name if scored else "",
            "model_version": scored.model_version if scored else "",
            "role": scored.role if scored else "NONE",
            "score": scored.score if scored else None,
            "decision": scored.decision if scored else None,
            "threshold": scored.threshold if scored else None,
            "label": entry.label if labelled else None,
            "label_time": entry.label_time_us if labelled else None,
            "label_delay_ms": (entry.label_time_us - entry.event_time_us) / 1000.0  # type: ignore[operator]
            if labelled
            else None,
        }


def _us(value: Any) -> int:
    return value if isinstance(value, int) else to_micros(value)
