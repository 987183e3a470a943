"""The closed loop as the demo shows it: `slipstream drift` and `slipstream loop` run beside the scorers, and the
live table's "closed loop" panel reads back what they write — the drift alarms (``drift``), the loop's decisions
(``model-events`` with a ``stream_time``) — and, from ``outcomes``, the realised average precision of each fraud
version before and after the drift start, and of the champion and the loop's challenger on the same events.

Mid-demo a new fraud pattern starts (the simulator's ``new-fraud-pattern``, card testing, from
:data:`DRIFT_START` on): the drift monitor raises alarms within about a day of event time; once the labels of the
new frauds arrive (7 days later) the champion's realised AP falls and the loop retrains, shadows the retrained
challenger, promotes it through its gates and watches the promotion (``loop_policy.toml`` beside this module says
why its values are what they are).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

DRIFT_SCENARIOS = ("new-fraud-pattern", "none")
# After every live start the demo can have ([2018-08-14, 08-21), see plan_timeline), at most a week after it.
DRIFT_START = date(2018, 8, 21)
# Event days from the drift start to the promotion with the demo's policy: 7 days of label delay and ~2 to see the
# loss, a retrain (and perhaps a retry 2 days later), then ~8 days in shadow (label delay + a day of labels).
LOOP_DAYS = 21
SIMULATED_TX_PER_DAY = 9_650  # the Handbook's ~9,600 a day, with card testing
POLICY = Path(__file__).with_name("loop_policy.toml")
DECISIONS = (
    "RETRAIN_STARTED",
    "RETRAINED",
    "RETRAIN_FAILED",
    "PROMOTION_HELD",
    "CHALLENGER_REJECTED",
    "PROMOTED",
    "ROLLED_BACK",
    "CHALLENGER_REMOVED",
)
REFRESH_S = 2.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def drift_data(state_dir: Path, scenario: str) -> Path:
    """Where the demo caches the simulation with ``scenario`` from :data:`DRIFT_START` on."""
    return state_dir / "data" / f"fraud-{scenario}-{DRIFT_START.isoformat()}.parquet"


def live_seconds_needed(days_to_drift: float, rate: float) -> float:
    """Wall seconds of live traffic at ``rate`` until the loop's promotion, the drift ``days_to_drift`` after the
    live start."""
    return (days_to_drift + LOOP_DAYS) * SIMULATED_TX_PER_DAY / rate


def drift_note(drift_us: int | None, live_us: int, rate: float) -> str:
    """The data line's word on the drift (shown times): when the new pattern starts, how long until the promotion."""
    if drift_us is None:
        return "; no drift"
    days = (drift_us - live_us) / 86_400e6
    wait = live_seconds_needed(days, rate) / 60
    return (
        f"; a new fraud pattern (card testing) starts at {_iso(drift_us)}, {days:.1f} event days into live: the loop "
        f"should promote a retrained model ~{wait:.0f} min into live at {rate:g}/s"
    )


def _us(value: Any) -> int:
    if isinstance(value, datetime):
        return (value - _EPOCH) // timedelta(microseconds=1)
    return int(value)


@dataclass(frozen=True, slots=True)
class Alarm:
    kind: str
    subject: str
    version: str
    window_end_us: int
    value: float
    threshold: float


@dataclass(frozen=True, slots=True)
class LoopDecision:
    """One of the loop's decisions on ``model-events``: its action, version, stream (event) time and reason."""

    action: str
    version: str
    stream_us: int
    reason: str

    def line(self) -> str:
        return f"{self.action} v{self.version}: {self.reason}"


@dataclass
class _Scores:
    scores: list[float] = field(default_factory=list)
    labels: list[bool] = field(default_factory=list)
    _ap: float = float("nan")
    _at: float = -1e9

    def add(self, score: float, label: bool) -> None:
        self.scores.append(score)
        self.labels.append(label)

    def ap(self) -> float:
        """Average precision so far (recomputed at most every :data:`REFRESH_S`)."""
        now = time.monotonic()
        if now - self._at >= REFRESH_S:
            self._at = now
            self._ap = _ap(self.labels, self.scores)
        return self._ap


def _ap(labels: list[bool], scores: list[float]) -> float:
    if not any(labels):
        return float("nan")
    from slipstream.models.metrics import average_precision

    return float(average_precision(labels, scores))


@dataclass
class LoopView:
    """What the closed-loop panel shows, fed by :meth:`on_alarm`, :meth:`on_model_event` and :meth:`on_outcome`."""

    enabled: bool = False  # drift and loop run in this demo
    scenario: str = "none"
    drift_start_us: int | None = None  # shown event time the new pattern starts at (None: no drift)
    ui_url: str = ""
    alarms: Counter[str] = field(default_factory=Counter)  # by kind
    first_alarm: Alarm | None = None
    latest_alarm: Alarm | None = None
    decisions: list[LoopDecision] = field(default_factory=list)
    champion: str = ""
    challenger: str = ""  # the loop's retrained version in shadow (or the predecessor during the rollback watch)
    periods: dict[tuple[str, str], _Scores] = field(default_factory=dict)  # (version, before/after drift)
    _pair: tuple[str, str, int] | None = None  # (challenger, champion, since µs) compared on the same events
    _paired: dict[str, list[float]] = field(default_factory=dict)  # event id -> [challenger, champion, label]
    _paired_ap: tuple[float, float, int, int] = (float("nan"), float("nan"), 0, 0)
    _paired_at: float = -1e9

    def on_alarm(self, value: Mapping[str, Any]) -> None:
        alarm = Alarm(
            str(value["kind"]),
            str(value["subject"]),
            str(value["model_version"]),
            _us(value["window_end"]),
            float(value["value"]),
            float(value["threshold"]),
        )
        self.alarms[alarm.kind] += 1
        if self.first_alarm is None or alarm.window_end_us < self.first_alarm.window_end_us:
            self.first_alarm = alarm
        if self.latest_alarm is None or alarm.window_end_us >= self.latest_alarm.window_end_us:
            self.latest_alarm = alarm

    def on_model_event(self, value: Mapping[str, Any]) -> None:
        if str(value.get("model_name")) != "fraud":
            return
        action, version = str(value["action"]), str(value["version"])
        if action in ("PROMOTED", "ROLLED_BACK"):
            self.champion = version
        if value.get("stream_time") is None or action not in DECISIONS:
            return  # a change by hand (the demo's own champion and challenger): not the loop's
        stream_us = _us(value["stream_time"])
        self.decisions.append(LoopDecision(action, version, stream_us, str(value.get("reason") or "")))
        previous = str(value.get("previous_version") or self.champion)
        if action == "RETRAINED":
            self.challenger = version
            self._pair = (version, previous, stream_us)
            self._paired.clear()
        elif action == "PROMOTED":
            self.challenger = previous  # the predecessor stays in shadow for the rollback watch
        elif action in ("CHALLENGER_REJECTED", "CHALLENGER_REMOVED", "ROLLED_BACK"):
            self.challenger = ""

    def on_outcome(self, value: Mapping[str, Any]) -> None:
        if value["status"] != "LABELLED" or value["label"] is None or value["score"] is None:
            return
        version, event_us = str(value["model_version"]), _us(value["event_time"])
        score, label = float(value["score"]), bool(value["label"])
        period = "all" if self.drift_start_us is None else "before" if event_us < self.drift_start_us else "after"
        self.periods.setdefault((version, period), _Scores()).add(score, label)
        pair = self._pair
        if pair is not None and version in pair[:2] and event_us >= pair[2]:
            row = self._paired.setdefault(str(value["event_id"]), [float("nan"), float("nan"), float(label)])
            row[0 if version == pair[0] else 1] = score

    def paired_ap(self) -> tuple[float, float, int, int]:
        """(challenger AP, champion AP, events, frauds) on the events both scored and that are labelled."""
        now = time.monotonic()
        if now - self._paired_at >= REFRESH_S:
            self._paired_at = now
            rows = np.array([r for r in self._paired.values() if not np.isnan(r[0] + r[1])], dtype=float)
            if len(rows):
                labels = rows[:, 2] > 0
                self._paired_ap = (
                    _ap(labels.tolist(), rows[:, 0].tolist()),
                    _ap(labels.tolist(), rows[:, 1].tolist()),
                    len(rows),
                    int(labels.sum()),
                )
        return self._paired_ap

    @property
    def state(self) -> str:
        """The loop's state in a few words, for the status line."""
        if not self.enabled:
            return "off"
        last = self.decisions[-1].action if self.decisions else ""
        return {
            "RETRAIN_STARTED": "retraining",
            "RETRAINED": f"challenger v{self.challenger} in shadow",
            "PROMOTION_HELD": f"challenger v{self.challenger} held in shadow (awaiting labels)",
            "PROMOTED": f"promoted v{self.champion}; watching for a rollback",
            "ROLLED_BACK": f"rolled back to v{self.champion}",
            "RETRAIN_FAILED": "retrain failed; cooling down",
            "CHALLENGER_REJECTED": "challenger rejected",
            "CHALLENGER_REMOVED": f"promotion of v{self.champion} stands",
        }.get(last, "watching" if not self.alarms else "alarmed; waiting for labels")

    def realised(self) -> list[tuple[str, str, float, int]]:
        """(version, period, AP, labelled) for each version and period, in version order."""
        order = {"before": 0, "all": 0, "after": 1}
        return [
            (version, period, s.ap(), len(s.labels))
            for (version, period), s in sorted(self.periods.items(), key=lambda kv: (_num(kv[0][0]), order[kv[0][1]]))
        ]

    def summary(self) -> dict[str, Any]:
        first, latest = self.first_alarm, self.latest_alarm
        challenger_ap, champion_ap, events, frauds = self.paired_ap()
        return {
            "enabled": self.enabled,
            "scenario": self.scenario,
            "drift_start": _iso(self.drift_start_us),
            "ui": self.ui_url or None,
            "alarms": dict(self.alarms),
            "first_alarm": None if first is None else _alarm_dict(first),
            "latest_alarm": None if latest is None else _alarm_dict(latest),
            "decisions": [
                {"action": d.action, "version": d.version, "event_time": _iso(d.stream_us), "reason": d.reason}
                for d in self.decisions
            ],
            "champion": self.champion or None,
            "challenger": self.challenger or None,
            "state": self.state,
            "realised_ap": [
                {"version": v, "period": p, "average_precision": ap, "labelled": n} for v, p, ap, n in self.realised()
            ],
            "same_events": {"challenger_ap": challenger_ap, "champion_ap": champion_ap, "events": events}
            | {"frauds": frauds, "pair": list(self._pair[:2]) if self._pair else None},
        }


def _num(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 30, version)


def _iso(us: int | None) -> str | None:
    if us is None:
        return None
    return datetime.fromtimestamp(us / 1e6, tz=UTC).isoformat(timespec="seconds")


def _alarm_dict(alarm: Alarm) -> dict[str, Any]:
    return {
        "kind": alarm.kind,
        "subject": alarm.subject,
        "version": alarm.version,
        "window_end": _iso(alarm.window_end_us),
        "value": alarm.value,
        "threshold": alarm.threshold,
    }
