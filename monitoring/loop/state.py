"""What the closed loop knows, rebuilt from its topics: a pure, deterministic state machine.

:class:`LoopState` takes decoded records (dicts shaped like the Avro contracts; times as tz-aware datetimes or epoch
micros) of four topics, in any order across topics, any number of times:

* ``model-events``: who is champion (PROMOTED, ROLLED_BACK), the loop's own past decisions (RETRAIN_STARTED,
  RETRAINED, RETRAIN_FAILED, PROMOTION_HELD, CHALLENGER_REJECTED, and PROMOTED / ROLLED_BACK / CHALLENGER_REMOVED
  carrying a ``stream_time``). A decision of the loop is a model event with a ``stream_time``; one made by hand has
  none. Every event id read is remembered (:attr:`LoopState.recorded`): the loop writes a decision with its
  :attr:`~slipstream.monitoring.loop.decide.Decision.decision_id` as event id, so a decision on the topic is never
  made again.
* ``drift``: alarms, de-duplicated by ``alarm_id``.
* ``outcomes``: LABELLED outcomes of champions and challengers (score, label) per version and event.
* ``shadow-comparisons``: per challenger and event, the flip and the challenger's latency.

**Clock.** The state has no clock: its time is the *watermark*, the newest event time it has read: an outcome's
``event_time`` and ``label_time``, a comparison's ``event_time``, an alarm's ``window_end``, a model event's
``stream_time`` (never ``event_time``, the wall clock of a registry change). A maximum does not depend on the order
records are read in, so the same records give the same state. Its caveat: while one topic is read far ahead of
another (catching up on a backlog), the watermark is that topic's; the host calls ``decide`` only once it has caught
up with every topic, as :meth:`PerformanceBook.compact` is called.

**Memory.** Kept per version not closed (closed: rejected, removed by hand, rolled back from): its LABELLED scores
``event_id -> (event_us, customer_id, label, score)`` and, per challenger, its comparisons ``event_id -> (event_us,
champion_version, flip, latency_us)``, of events no older than ``policy.retention_days`` before the watermark (the
longest look-back of the performance trigger and of both gates: 21 days by default); drift alarms of the last
``alarm_window_days``; the ids of model events (a handful a day). With the default policy on the Handbook's data
(~9,600 events a day) and a champion with one version in shadow: ~200,000 scores per version at ~130 bytes each
(tracemalloc) plus the event id (~55 bytes, one string shared by the versions), and as many comparisons: under
100 MB. Rows older than the retention are pruned whenever the watermark has moved an hour, and every query
filters by the exact cutoff, so when pruning ran makes no difference. A closed version's rows go at once.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from slipstream.monitoring.exceptions import MonitoringError
from slipstream.monitoring.figures import DAY_US, micros
from slipstream.monitoring.loop.evidence import PairedRow
from slipstream.monitoring.loop.policy import Policy

__all__ = ["Alarm", "LoopState", "Shadow", "Watch", "days_us"]

HOUR_US: Final = 3_600_000_000
Labelled = tuple[int, int, bool, float]  # event_us, customer_id, label, score
# event_us, champion_version, flip, latency_us, customer_id, challenger_score, champion_score
Compared = tuple[int, str, bool, float, int, float, float]


def days_us(days: float) -> int:
    return round(days * DAY_US)


@dataclass(frozen=True, slots=True)
class Alarm:
    alarm_id: str
    window_end_us: int
    kind: str
    model_version: str
    subject: str
    value: float
    threshold: float


@dataclass(frozen=True, slots=True)
class Shadow:
    """A challenger the loop trained, in shadow since ``since_us`` (its RETRAINED decision's stream time)."""

    version: str
    since_us: int


@dataclass(frozen=True, slots=True)
class Watch:
    """The rollback watch: ``champion`` promoted by the loop at ``since_us``, ``predecessor`` kept in shadow."""

    champion: str
    predecessor: str
    since_us: int


class LoopState:
    """The loop's knowledge of one model (``policy.model.name``); see the module for inputs, clock and memory."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.model = policy.model.name
        self.watermark_us: int | None = None
        self.first_us: int | None = None  # the oldest event time read (the schedule's start without a retrain)
        self.champion_since_us: int | None = None  # stream time of the loop's promotion or rollback to it
        self.cards: dict[str, dict[str, float]] = {}  # version -> its model card's validation metrics
        self.recorded: set[str] = set()  # ids of every model event read
        self.retrains_started = 0
        self.retrains_ended = 0  # RETRAINED + RETRAIN_FAILED
        self.last_retrain_us: int | None = None  # stream time of the newest RETRAIN_STARTED
        self.shadows: dict[str, Shadow] = {}
        self.watch: Watch | None = None
        self.closed: set[str] = set()
        self.held: set[tuple[str, str]] = set()  # (version, code) of every PROMOTION_HELD
        self.alarms: dict[str, Alarm] = {}
        self.labelled: dict[str, dict[str, Labelled]] = {}
        self.compared: dict[str, dict[str, Compared]] = {}
        self.frauds: dict[str, int] = {}  # event id -> event time of those labelled fraud (any version's outcome)
        self.counts: dict[str, int] = dict.fromkeys(("model_events", "alarms", "outcomes", "comparisons"), 0)
        self.duplicates = 0
        self.ignored = 0  # records of other models, or of closed versions, or older than the retention
        self._champion: str | None = None
        self._champion_seen: tuple[int, str] | None = None  # newest (event_us, version) in a champion's role
        self._pruned_at_us: int | None = None

    # ------------------------------------------------------------------ reading
    @property
    def champion(self) -> str | None:
        """The champion named by the newest PROMOTED / ROLLED_BACK; before any, the version of the newest champion
        prediction (outcome or comparison) read."""
        if self._champion is not None:
            return self._champion
        return self._champion_seen[1] if self._champion_seen is not None else None

    @property
    def retrain_in_flight(self) -> bool:
        """A RETRAIN_STARTED without its RETRAINED or RETRAIN_FAILED yet (the host resumes or fails it)."""
        return self.retrains_started > self.retrains_ended

    @property
    def cutoff_us(self) -> int | None:
        """Scores of events older than this are neither kept nor used."""
        if self.watermark_us is None:
            return None
        return self.watermark_us - days_us(self.policy.retention_days)

    def note_card(self, version: str, metrics: Mapping[str, float]) -> LoopState:
        """The validation metrics of ``version``'s model card (MLflow is read by the host, never here)."""
        self.cards[str(version)] = {str(k): float(v) for k, v in metrics.items()}
        return self

    def update_all(self, records: Iterable[Mapping[str, Any]]) -> LoopState:
        for record in records:
            self.update(record)
        return self

    def update(self, record: Mapping[str, Any]) -> LoopState:
        """Take one decoded record of ``model-events``, ``drift``, ``outcomes`` or ``shadow-comparisons``."""
        if "alarm_id" in record:
            kind = "alarms"
        elif "outcome_id" in record:
            kind = "outcomes"
        elif "comparison_id" in record:
            kind = "comparisons"
        elif "action" in record:
            kind = "model_events"
        else:
            msg = f"not a model event, drift alarm, outcome or comparison: a record with fields {sorted(record)[:8]}"
            raise MonitoringError(msg)
        if str(record.get("model_name", "")) != self.model:
            self.ignored += 1
            return self
        self.counts[kind] += 1
        {
            "alarms": self._alarm,
            "outcomes": self._outcome,
            "comparisons": self._comparison,
            "model_events": self._model_event,
        }[kind](record)
        return self

    def _advance(self, event_us: int) -> None:
        if self.first_us is None or event_us < self.first_us:
            self.first_us = event_us
        if self.watermark_us is None or event_us > self.watermark_us:
            self.watermark_us = event_us
            if self._pruned_at_us is None or event_us - self._pruned_at_us >= HOUR_US:
                self._prune()

    def _visible(self, event_us: int) -> bool:
        cutoff = self.cutoff_us
        return cutoff is None or event_us >= cutoff

    def _outcome(self, r: Mapping[str, Any]) -> None:
        event_us = micros(r["event_time"])
        self._advance(event_us)
        if r.get("label_time") is not None:
            self._advance(micros(r["label_time"]))
        version = str(r["model_version"])
        if r.get("role") == "CHAMPION":
            self._saw_champion(event_us, version)
        if r.get("status") != "LABELLED" or r.get("score") is None or r.get("label") is None:
            return
        if r["label"] and self._visible(event_us):  # a fact about the event, whichever version's outcome says it
            self.frauds[sys.intern(str(r["event_id"]))] = event_us
        if version in self.closed or not self._visible(event_us):
            self.ignored += 1
            return
        rows = self.labelled.setdefault(version, {})
        event_id = sys.intern(str(r["event_id"]))  # one string for the versions scoring the same event
        if event_id in rows:
            self.duplicates += 1
            return
        rows[event_id] = (event_us, int(r["customer_id"]), bool(r["label"]), float(r["score"]))

    def _comparison(self, r: Mapping[str, Any]) -> None:
        event_us = micros(r["event_time"])
        self._advance(event_us)
        self._saw_champion(event_us, str(r["champion_version"]))
        version = str(r["challenger_version"])
        if version in self.closed or not self._visible(event_us):
            self.ignored += 1
            return
        rows = self.compared.setdefault(version, {})
        event_id = sys.intern(str(r["event_id"]))
        if event_id in rows:
            self.duplicates += 1
            return
        rows[event_id] = (
            event_us,
            str(r["champion_version"]),
            bool(r["flip"]),
            float(r["challenger_latency_us"]),
            int(r.get("customer_id", 0)),
            float(r.get("challenger_score", 0.0)),
            float(r.get("champion_score", 0.0)),
        )

    def _alarm(self, r: Mapping[str, Any]) -> None:
        alarm_id = str(r["alarm_id"])
        end_us = micros(r["window_end"])
        self._advance(end_us)
        if alarm_id in self.alarms:
            self.duplicates += 1
            return
        if self.watermark_us is not None and end_us < self.watermark_us - self._alarm_window_us():
            self.ignored += 1
            return
        self.alarms[alarm_id] = Alarm(
            alarm_id,
            end_us,
            str(r["kind"]),
            str(r["model_version"]),
            str(r.get("subject", "")),
            float(r.get("value", 0.0)),
            float(r.get("threshold", 0.0)),
        )

    def _alarm_window_us(self) -> int:
        return days_us(self.policy.triggers.drift.alarm_window_days)

    def _saw_champion(self, event_us: int, version: str) -> None:
        if self._champion_seen is None or (event_us, version) > self._champion_seen:
            self._champion_seen = (event_us, version)

    # ------------------------------------------------------------------ model events
    def _model_event(self, r: Mapping[str, Any]) -> None:
        event_id = str(r["event_id"])
        if event_id in self.recorded:
            self.duplicates += 1
            return
        self.recorded.add(event_id)
        stream_us = micros(r["stream_time"]) if r.get("stream_time") is not None else None
        if stream_us is not None:
            self._advance(stream_us)
        action, version = str(r["action"]), str(r["version"])
        previous = str(r["previous_version"]) if r.get("previous_version") is not None else None
        if action == "PROMOTED":
            previous = previous or self.champion
            self._champion, self.champion_since_us = version, stream_us
            self.closed.discard(version)
            self.shadows.pop(version, None)
            self.watch = None  # a promotion by hand ends any watch; one by the loop starts one
            if stream_us is not None and previous is not None and previous != version:
                self.watch = Watch(version, previous, stream_us)
        elif action == "ROLLED_BACK":
            self._champion, self.champion_since_us = version, stream_us
            self.closed.discard(version)
            self.watch = None
            if previous is not None and previous != version:
                self._close(previous)
        elif action == "RETRAIN_STARTED":
            self.retrains_started += 1
            self.last_retrain_us = stream_us if stream_us is not None else self.watermark_us
        elif action in ("RETRAINED", "RETRAIN_FAILED"):
            self.retrains_ended += 1
            if action == "RETRAINED" and version not in self.closed and version != self.champion:
                since = stream_us if stream_us is not None else self.last_retrain_us
                self.shadows[version] = Shadow(version, since if since is not None else self.watermark_us or 0)
        elif action == "CHALLENGER_REJECTED":
            self._close(version)
        elif action == "CHALLENGER_REMOVED" and version != self.champion:
            if self.watch is not None and version == self.watch.predecessor:
                self.watch = None
                self._close(version)
            elif version in self.shadows:
                self._close(version)
        elif action == "PROMOTION_HELD":
            self.held.add((version, str(_evidence(r).get("code", ""))))

    def _close(self, version: str) -> None:
        self.closed.add(version)
        self.shadows.pop(version, None)
        self.labelled.pop(version, None)
        self.compared.pop(version, None)

    # ------------------------------------------------------------------ retention
    def _prune(self) -> None:
        self._pruned_at_us = self.watermark_us
        cutoff = self.cutoff_us
        if cutoff is None or self.watermark_us is None:
            return
        for labelled in self.labelled.values():
            _drop_before(labelled, cutoff)
        for compared in self.compared.values():
            _drop_before(compared, cutoff)
        for event_id in [k for k, t in self.frauds.items() if t < cutoff]:
            del self.frauds[event_id]
        alarm_cut = self.watermark_us - self._alarm_window_us()
        for alarm_id in [k for k, a in self.alarms.items() if a.window_end_us < alarm_cut]:
            del self.alarms[alarm_id]

    # ------------------------------------------------------------------ queries
    def scores(self, version: str, since_us: int) -> list[tuple[str, Labelled]]:
        """``version``'s labelled scores of events at or after ``since_us`` (and within the retention)."""
        low = max(since_us, self.cutoff_us or since_us)
        return [(k, row) for k, row in self.labelled.get(version, {}).items() if row[0] >= low]

    def paired_rows(self, a: str, b: str, since_us: int, before_us: int) -> list[PairedRow]:
        """Events scored by both ``a`` and ``b`` with ``since_us <= event time < before_us`` (callers pass a cut of
        *mature* events: older than ``retrain.label_maturity_days``).

        When one of the two shadowed the other, every event both scored is a row (its comparison holds both scores),
        labelled as known: fraud if a LABELLED outcome said so, genuine otherwise — the known-labels protocol, which
        the retrain uses too: with realistic delays frauds are reported within days while genuine transactions are
        confirmed only at 30, and a gate that waited for those would wait a month. Without comparisons, the events
        labelled for both (their outcomes)."""
        low = max(since_us, self.cutoff_us or since_us)
        found: dict[str, PairedRow] = {}
        for challenger, champion, swap in ((a, b, False), (b, a, True)):
            for key, c in self.compared.get(challenger, {}).items():
                if c[1] != champion or not low <= c[0] < before_us or key in found:
                    continue
                score_challenger, score_champion = c[5], c[6]
                first, second = (score_champion, score_challenger) if swap else (score_challenger, score_champion)
                found[key] = (c[0], key, c[4], key in self.frauds, first, second)
        if found:
            return list(found.values())
        out: list[PairedRow] = []
        rows_a, rows_b = self.labelled.get(a, {}), self.labelled.get(b, {})
        if len(rows_b) < len(rows_a):
            keys: Iterable[str] = (k for k in rows_b if k in rows_a)
        else:
            keys = (k for k in rows_a if k in rows_b)
        for key in keys:
            event_us, customer, label, score_a = rows_a[key]
            if low <= event_us < before_us:
                out.append((event_us, key, customer, label, score_a, rows_b[key][3]))
        return out

    def comparisons(self, challenger: str, champion: str, since_us: int, until_us: int) -> list[Compared]:
        """``challenger``'s comparisons against ``champion`` of events in [``since_us``, ``until_us``]."""
        low = max(since_us, self.cutoff_us or since_us)
        return [c for c in self.compared.get(challenger, {}).values() if c[1] == champion and low <= c[0] <= until_us]


def _drop_before(table: dict[str, Any], cutoff: int) -> None:
    for event_id in [k for k, row in table.items() if row[0] < cutoff]:
        del table[event_id]


def _evidence(record: Mapping[str, Any]) -> dict[str, Any]:
    text = record.get("evidence")
    if not text:
        return {}
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
