"""A small synthetic world for the loop: one model's traffic day by day, labels 7 days late, and a driver that runs
the loop the way its host does (read, decide, write the decisions on model-events, read them back).

Each version has a ``quality`` q: its score is ``(q * label + noise) / (1 + q)`` (noise uniform, per version and
event), so a higher q ranks frauds higher (a better average precision). Everything is seeded: the same world gives
the same records."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from slipstream.monitoring.figures import DAY_US, micros
from slipstream.monitoring.loop.decide import Decision, decide
from slipstream.monitoring.loop.policy import Policy
from slipstream.monitoring.loop.state import LoopState

MODEL = "fraud"
START_US = micros(datetime(2018, 8, 1, tzinfo=UTC))
THRESHOLD = 0.5


def day_us(day: float) -> int:
    return START_US + round(day * DAY_US)


def model_event(
    action: str,
    version: str,
    *,
    previous: str | None = None,
    stream_us: int | None = None,
    event_id: str = "",
    evidence: str | None = None,
    alias: str = "champion",
) -> dict[str, Any]:
    return {
        "event_id": event_id or f"{action}:{version}:{stream_us}",
        "event_time": datetime(2024, 1, 1, tzinfo=UTC),  # the wall clock: never the loop's
        "action": action,
        "model_name": MODEL,
        "alias": alias,
        "version": version,
        "previous_version": previous,
        "artifact_uri": "",
        "checksum": "",
        "actor": "test",
        "reason": None,
        "evidence": evidence,
        "stream_time": stream_us,
    }


def alarm(alarm_id: str, version: str, end_us: int, kind: str = "FEATURE_DRIFT") -> dict[str, Any]:
    return {
        "alarm_id": alarm_id,
        "model_name": MODEL,
        "model_version": version,
        "kind": kind,
        "subject": "amount",
        "statistic": "psi",
        "value": 0.4,
        "threshold": 0.2,
        "p_value": None,
        "nominal_false_alarm_rate": 0.001,
        "window_start": end_us - DAY_US,
        "window_end": end_us,
        "n": 200,
        "evidence": [],
        "raised_at": end_us,
    }


@dataclass
class Step:
    """One day of the host's loop: the records read, the decisions made, the model events written for them."""

    day: int
    records: list[dict[str, Any]]
    decisions: list[Decision]
    written: list[dict[str, Any]]


@dataclass
class World:
    policy: Policy
    quality: dict[str, float]
    per_day: int = 200
    fraud_rate: float = 0.05
    delay_days: float = 7.0
    latency_us: dict[str, float] = field(default_factory=dict)
    retrained: list[str] = field(default_factory=list)  # versions a RETRAIN produces, in turn (then: fails)
    alarms: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # day -> alarms read that day
    cards: dict[str, float] = field(default_factory=dict)  # version -> validation AP
    seed: int = 7
    champion: str = "1"
    shadows: list[str] = field(default_factory=list)  # versions scored in shadow (the registry's challengers)
    steps: list[Step] = field(default_factory=list)
    _pending: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.state = LoopState(self.policy)
        for version, value in self.cards.items():
            self.state.note_card(version, {"average_precision": value})
        start = model_event("PROMOTED", self.champion, event_id="by-hand")  # a promotion by hand: no stream time
        self.state.update(start)
        self.steps.append(Step(-1, [start], [], []))

    # ------------------------------------------------------------------ traffic
    def _score(self, version: str, labels: np.ndarray, day: int) -> np.ndarray:
        noise = np.random.default_rng([self.seed, day, int(version)]).random(len(labels))
        q = self.quality[version]
        return np.round((q * labels + noise) / (1 + q), 4)

    def traffic(self, day: int) -> list[dict[str, Any]]:
        """The day's comparisons (read at once) and the outcomes whose labels arrived by the end of the day."""
        rng = np.random.default_rng([self.seed, day])
        labels = (rng.random(self.per_day) < self.fraud_rate).astype(float)
        customers = rng.integers(0, 400, self.per_day)
        times = [day_us(day) + i * (DAY_US // self.per_day) for i in range(self.per_day)]
        champion_scores = self._score(self.champion, labels, day)
        out: list[dict[str, Any]] = []
        for version in [self.champion, *self.shadows]:
            scores = champion_scores if version == self.champion else self._score(version, labels, day)
            role = "CHAMPION" if version == self.champion else "CHALLENGER"

            def pair(i: int, scores: np.ndarray = scores) -> tuple[float, float]:
                return float(champion_scores[i]), float(scores[i])

            for i in range(self.per_day):
                event_id = f"e{day}-{i}"
                label_us = times[i] + round(self.delay_days * DAY_US)
                score, label = float(scores[i]), bool(labels[i])
                outcome = make_outcome(event_id, times[i], int(customers[i]), version, role, score, label, label_us)
                self._pending.append((label_us, outcome))
                if role == "CHALLENGER":
                    latency = self.latency_us.get(version, 80.0)
                    out.append(comparison(event_id, times[i], self.champion, version, *pair(i), latency))
        end = day_us(day + 1)
        out += [r for t, r in self._pending if t < end]
        self._pending = [(t, r) for t, r in self._pending if t >= end]
        return out + self.alarms.get(day, [])

    # ------------------------------------------------------------------ the host
    def run(self, days: int) -> list[Decision]:
        made: list[Decision] = []
        for day in range(len(self.steps) - 1, len(self.steps) - 1 + days):
            records = self.traffic(day)
            self.state.update_all(records)
            decisions = decide(self.state, self.policy)
            written = [w for d in decisions for w in self.execute(d)]
            self.state.update_all(written)
            self.steps.append(Step(day, records, decisions, written))
            made += decisions
        return made

    def execute(self, d: Decision) -> list[dict[str, Any]]:
        """What the host does for a decision: its model event (the decision id as event id), and the registry's."""
        head = model_event(d.model_action, d.version, previous=d.previous_version, stream_us=d.stream_time_us)
        head |= d.event_fields() | {"event_time": head["event_time"]}
        out = [head]
        if d.action == "RETRAIN":
            if self.retrained:
                new = self.retrained.pop(0)
                out.append(model_event("RETRAINED", new, previous=d.version, stream_us=d.stream_time_us))
                self.shadows.append(new)
            else:
                out.append(model_event("RETRAIN_FAILED", d.version, stream_us=d.stream_time_us))
        elif d.action == "PROMOTE":
            self.shadows.remove(d.version)
            self.shadows.append(self.champion)  # the predecessor stays in shadow for the rollback watch
            self.champion = d.version
        elif d.action in ("REJECT", "KEEP"):
            self.shadows.remove(d.version)
        elif d.action == "ROLLBACK":
            self.shadows.remove(d.version)
            self.champion = d.version
        return out

    def history(self) -> list[dict[str, Any]]:
        return [r for s in self.steps for r in (*s.records, *s.written)]


def make_outcome(
    event_id: str, event_us: int, customer_id: int, version: str, role: str, score: float, label: bool, label_us: int
) -> dict[str, Any]:
    """A LABELLED outcome, as the label joiner writes it."""
    return {
        "outcome_id": f"{event_id}@{version}",
        "status": "LABELLED",
        "event_id": event_id,
        "customer_id": customer_id,
        "event_time": event_us,
        "model_name": MODEL,
        "model_version": version,
        "role": role,
        "score": score,
        "decision": score > THRESHOLD,
        "threshold": THRESHOLD,
        "label": label,
        "label_time": label_us,
        "label_delay_ms": (label_us - event_us) / 1000,
    }


def comparison(
    event_id: str,
    event_us: int,
    champion: str,
    challenger: str,
    champion_score: float,
    challenger_score: float,
    latency_us: float,
) -> dict[str, Any]:
    flip = bool(champion_score > THRESHOLD) != bool(challenger_score > THRESHOLD)
    return {
        "comparison_id": f"{event_id}@{champion}~{challenger}",
        "prediction_id": f"{event_id}@{champion}",
        "event_id": event_id,
        "customer_id": 1,
        "model_name": MODEL,
        "event_time": event_us,
        "champion_version": champion,
        "challenger_version": challenger,
        "challenger_alias": "challenger",
        "champion_score": float(champion_score),
        "challenger_score": float(challenger_score),
        "champion_threshold": THRESHOLD,
        "challenger_threshold": THRESHOLD,
        "champion_decision": bool(champion_score > THRESHOLD),
        "challenger_decision": bool(challenger_score > THRESHOLD),
        "flip": flip,
        "score_delta": float(challenger_score - champion_score),
        "feature_source": "PREDICTION",
        "challenger_latency_us": latency_us,
        "compared_at": event_us,
    }
