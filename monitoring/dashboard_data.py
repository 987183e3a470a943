"""What the dashboard shows, from decoded records of its topics: a pure state machine (no I/O, no clock).

:class:`DashboardData` takes records of ``predictions``, ``shadow-comparisons``, ``shadow-rankings`` and
``outcomes`` (into a :class:`~slipstream.monitoring.performance.PerformanceBook`), ``drift-windows``, ``drift`` and
``model-events``, in any order and any number of times: a window, alarm or event whose id was seen already is counted
in ``duplicates`` and changes nothing. From them it derives

- :meth:`~DashboardData.versions`: every model version and its role now (champion, challenger, retired, registered,
  refused), replayed from ``model-events`` in the order of their ``event_time`` (ties: the order read; the topic has
  one partition, so that is the order written); versions that were only ever seen scoring are listed too;
- :meth:`~DashboardData.heatmaps`: per model, the subjects (features, then ``score``) by closed windows;
- :meth:`~DashboardData.timeline`: the alarms and the decisions, in event time where it is known (an alarm's
  ``window_end``, a decision's ``stream_time``); a change made by hand has only its wall clock ``event_time``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import orjson

from slipstream.monitoring.performance import PerformanceBook

ROLES: Final = ("champion", "challenger", "retired", "registered", "refused")
CHAMPION_ALIAS: Final = "champion"
P_FLOOR: Final = 1e-12  # -log10 p is drawn up to 12


@dataclass(frozen=True, slots=True)
class VersionRole:
    model_name: str
    version: str
    role: str
    aliases: tuple[str, ...]
    since: datetime | None  # when the role began (the event's event_time); None: seen only in scores
    last_action: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class Heatmap:
    """One model's drift windows: ``values[i][j]`` is subject ``i`` in window ``j`` (NaN: not measured there)."""

    model_name: str
    subjects: tuple[str, ...]
    window_ends: tuple[datetime, ...]
    versions: tuple[str, ...]  # per window: the champion version compared
    alarmed: tuple[bool, ...]
    values: tuple[tuple[float, ...], ...]
    moved: tuple[tuple[bool, ...], ...]
    scale: str  # "-log10 p" or "value / threshold"


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    time: datetime | None  # event time: an alarm's window_end, a decision's stream_time
    wall: datetime  # an alarm's raised_at, an event's event_time
    source: str  # "drift" or "model-events"
    kind: str  # DriftKind or ModelAction
    model_name: str
    version: str
    detail: str
    reason: str


@dataclass(slots=True)
class _Roles:
    aliases: set[str] = field(default_factory=set)
    ever_aliased: bool = False
    refused: bool = False
    since: datetime | None = None
    last_action: str = ""
    reason: str | None = None


class DashboardData:
    """Everything the dashboard draws (see module)."""

    def __init__(self, book: PerformanceBook | None = None) -> None:
        self.book = book if book is not None else PerformanceBook()
        self._windows: dict[str, Mapping[str, Any]] = {}
        self._alarms: dict[str, Mapping[str, Any]] = {}
        self._events: dict[str, tuple[int, Mapping[str, Any]]] = {}
        self.duplicates: dict[str, int] = {"drift_windows": 0, "alarms": 0, "model_events": 0}

    # ------------------------------------------------------------------ update
    def update(self, record: Mapping[str, Any]) -> DashboardData:
        """Take one decoded record of any of the dashboard's topics."""
        if "window_id" in record:
            self._keep(self._windows, "drift_windows", record["window_id"], record)
        elif "alarm_id" in record:
            self._keep(self._alarms, "alarms", record["alarm_id"], record)
        elif "artifact_uri" in record:
            if record["event_id"] in self._events:
                self.duplicates["model_events"] += 1
            else:
                self._events[record["event_id"]] = (len(self._events), record)
        else:
            self.book.update(record)
        return self

    def _keep(self, store: dict[str, Mapping[str, Any]], kind: str, key: str, record: Mapping[str, Any]) -> None:
        if key in store:
            self.duplicates[kind] += 1
        else:
            store[key] = record

    def update_all(self, records: Iterable[Mapping[str, Any]]) -> DashboardData:
        for record in records:
            self.update(record)
        return self

    def reject(self, reason: str) -> DashboardData:
        self.book.reject(reason)
        return self

    @property
    def records(self) -> dict[str, int]:
        """Distinct records taken, by kind (the book's counts include its re-deliveries)."""
        counts = dict(self.book.records)
        counts |= {"drift_windows": len(self._windows), "alarms": len(self._alarms)}
        return counts | {"model_events": len(self._events)}

    def summary(self) -> dict[str, Any]:
        """The book's summary by day and over all event time (the charts' and tables' rows)."""
        return self.book.summary(("day", "all"))

    # ------------------------------------------------------------------ versions
    def versions(self, summary: Mapping[str, Any] | None = None) -> list[VersionRole]:
        """Every version named by a model event (its role replayed), then those only seen in ``summary``'s rows."""
        state: dict[tuple[str, str], _Roles] = {}
        events = sorted(self._events.values(), key=lambda e: (e[1]["event_time"], e[0]))
        for _seq, event in events:
            self._apply(state, event)
        out = [
            VersionRole(model, version, _role(r), tuple(sorted(r.aliases)), r.since, r.last_action, r.reason)
            for (model, version), r in state.items()
        ]
        seen = set(state)
        for row in (summary or {}).get("performance", []):
            key = (row["model_name"], row["model_version"])
            if row["period"] == "all" and key not in seen and row["model_name"]:
                seen.add(key)
                role = str(row["role"]).lower()
                out.append(VersionRole(key[0], key[1], role, (), None, "scores read", None))
        out.sort(key=lambda v: (v.model_name, ROLES.index(v.role) if v.role in ROLES else 9, _version_key(v.version)))
        return out

    @staticmethod
    def _apply(state: dict[tuple[str, str], _Roles], e: Mapping[str, Any]) -> None:
        model, action, alias, version = e["model_name"], str(e["action"]), e["alias"], e["version"]

        def of(v: str) -> _Roles:
            return state.setdefault((model, v), _Roles())

        def take(v: str, name: str) -> None:  # ``name`` leaves whoever held it and goes to ``v``
            for (m, _v), held in state.items():
                if m == model and name in held.aliases and _v != v:
                    held.aliases.discard(name)
                    held.since, held.last_action, held.reason = e["event_time"], f"{action} of v{v}", e["reason"]
            r = of(v)
            r.aliases.add(name)
            r.ever_aliased = True

        if action in ("PROMOTED", "ROLLED_BACK"):
            take(version, alias or CHAMPION_ALIAS)
        elif action == "CHALLENGER_SET":
            take(version, alias)
        elif action in ("CHALLENGER_REMOVED", "CHALLENGER_REJECTED"):
            r = of(version)
            if alias:
                r.aliases.discard(alias)
            else:
                r.aliases -= {a for a in r.aliases if a != CHAMPION_ALIAS}
            r.ever_aliased = True
        elif action == "REFUSED":
            of(version).refused = True
        if not version or action == "RETRAIN_STARTED":  # its version is the champion it would replace
            return
        r = of(version)
        r.since, r.last_action, r.reason = e["event_time"], action, e["reason"]

    # ------------------------------------------------------------------ drift
    def heatmaps(self) -> list[Heatmap]:
        """Per model (by name), its windows by window end: -log10 p where every measured subject has a p-value,
        else value / threshold (1 = the subject's own threshold)."""
        by_model: dict[str, list[Mapping[str, Any]]] = {}
        for w in self._windows.values():
            by_model.setdefault(w["model_name"], []).append(w)
        maps = []
        for model in sorted(by_model):
            windows = sorted(by_model[model], key=lambda w: (w["window_end"], w["window_id"]))
            names: dict[str, None] = {}
            for w in windows:
                names |= {s["subject"]: None for s in w["subjects"] if s["subject"] != "score"}
            has_score = any(s["subject"] == "score" for w in windows for s in w["subjects"])
            subjects = (*names, "score") if has_score else tuple(names)
            cells = [{s["subject"]: s for s in w["subjects"]} for w in windows]
            with_p = all(s["p_value"] is not None for c in cells for s in c.values())
            maps.append(
                Heatmap(
                    model,
                    subjects,
                    tuple(w["window_end"] for w in windows),
                    tuple(w["model_version"] for w in windows),
                    tuple(bool(w["alarmed"]) for w in windows),
                    tuple(tuple(_colour(c.get(name), with_p) for c in cells) for name in subjects),
                    tuple(tuple(bool(c[name]["moved"]) if name in c else False for c in cells) for name in subjects),
                    "-log10 p" if with_p else "value / threshold",
                )
            )
        return maps

    # ------------------------------------------------------------------ timeline
    def timeline(self) -> list[TimelineEntry]:
        """Alarms and decisions, oldest first (event time, then wall clock; hand-made changes by wall clock)."""
        out = [_alarm_entry(a) for a in self._alarms.values()]
        out += [_event_entry(e) for _seq, e in sorted(self._events.values(), key=lambda e: e[0])]
        out.sort(key=lambda t: (t.time is None, t.time or t.wall, t.wall))
        return out


def _role(r: _Roles) -> str:
    if CHAMPION_ALIAS in r.aliases:
        return "champion"
    if r.aliases:
        return "challenger"
    if r.ever_aliased:
        return "retired"
    return "refused" if r.refused else "registered"


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 62, version)


def _colour(subject: Mapping[str, Any] | None, with_p: bool) -> float:
    if subject is None:
        return math.nan
    if with_p:
        return -math.log10(max(float(subject["p_value"]), P_FLOOR))
    threshold = float(subject["threshold"])
    return float(subject["value"]) / threshold if threshold > 0 else math.nan


def _num(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _alarm_entry(a: Mapping[str, Any]) -> TimelineEntry:
    p = "" if a["p_value"] is None else f", p {a['p_value']:.2g}"
    detail = f"{a['subject']}: {a['statistic']} {_num(a['value'])} vs threshold {_num(a['threshold'])}{p}"
    moved = [e["subject"] for e in a.get("evidence", []) if e["moved"]]
    reason = f"moved: {', '.join(moved)}" if moved else ""
    reason += (
        f"{'; ' if reason else ''}window n {a['n']}, nominal false-alarm rate {_num(a['nominal_false_alarm_rate'])}"
    )
    return TimelineEntry(
        a["window_end"], a["raised_at"], "drift", str(a["kind"]), a["model_name"], a["model_version"], detail, reason
    )


def evidence_text(evidence: str | None, limit: int = 240) -> str:
    """A decision's evidence JSON as ``key=value`` pairs (nested values as compact JSON), cut at ``limit``."""
    if not evidence:
        return ""
    try:
        parsed = orjson.loads(evidence)
    except orjson.JSONDecodeError:
        text = evidence
    else:
        if isinstance(parsed, dict):
            text = ", ".join(
                f"{k}={_num(v) if isinstance(v, int | float | str) else orjson.dumps(v).decode()}"
                for k, v in parsed.items()
            )
        else:
            text = orjson.dumps(parsed).decode()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _event_entry(e: Mapping[str, Any]) -> TimelineEntry:
    action = str(e["action"])
    detail = f"v{e['version']}" if e["version"] else ""
    if e["alias"]:
        detail += f" as {e['alias']}"
    if e["previous_version"]:
        detail += f" (was v{e['previous_version']})"
    detail += f" by {e['actor']}"
    reason = " — ".join(t for t in (e["reason"] or "", evidence_text(e["evidence"])) if t)
    return TimelineEntry(
        e["stream_time"], e["event_time"], "model-events", action, e["model_name"], e["version"], detail, reason
    )


__all__ = ["ROLES", "DashboardData", "Heatmap", "TimelineEntry", "VersionRole", "evidence_text"]
