"""The drift monitor of one model version: a pure, deterministic state machine fed by the drift processor.

:class:`DriftMonitor` is built from the version's ``reference["drift"]`` (:mod:`slipstream.models.reference`) and
:class:`DriftSettings`:

* :meth:`~DriftMonitor.observe_prediction` counts a champion prediction's features and score into its tumbling
  event-time window (UTC-aligned, ``window_s`` long). Windows close when the watermark passes them (``advance``:
  the host's watermark is the slowest input partition's), so partitions read unevenly lose nothing. At most
  :data:`MAX_OPEN` (8) windows are open: one that needs a ninth closes the oldest first; a prediction older than the
  oldest open window (or than a window already closed) is counted in ``late`` and dropped.
* :meth:`~DriftMonitor.advance` closes every window whose end is at or before the watermark and returns one
  ``drift_window`` dict per window and the ``drift_alarm`` dicts (FEATURE_DRIFT, SCORE_DRIFT) it raised, both without
  their wall-clock field (``closed_at`` / ``raised_at``), timestamps in epoch µs. A window of fewer than
  ``min_window_n`` predictions closes untested: ``subjects`` is empty and ``alarmed`` false.
* :meth:`~DriftMonitor.observe_outcome` feeds the Brier error (score - label)^2 of a labelled champion prediction to
  a change detector (ERROR_RATE on an increase); :meth:`~DriftMonitor.observe_comparison` a shadow flip, one
  detector per challenger (FLIP_RATE).

Each tested subject's primary statistic gets a calibrated p-value (:mod:`.calibration`); Benjamini–Hochberg at
``fdr_q`` across the tested subjects decides which moved (``moved``); the window alarms if any did, so under no drift
a window alarms falsely with probability <= ``fdr_q`` (the ``nominal_false_alarm_rate`` of the alarms). A subject's
``threshold`` is the value it would be rejected at on its own (p = q / m, m subjects tested).

Memory: O(subjects x bins x open windows, at most :data:`MAX_OPEN`) counts + the calibrated nulls (O(subjects x
bins)) + the detectors (O(log n) buckets for ADWIN, O(1) for Page–Hinkley, one per challenger).
:meth:`~DriftMonitor.to_bytes` writes the mutable part as compact JSON; :meth:`~DriftMonitor.from_bytes` rebuilds the
rest from the reference.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from slipstream.monitoring.drift.calibration import SubjectNull, benjamini_hochberg, calibrate
from slipstream.monitoring.drift.detectors import DETECTORS, Adwin, PageHinkley, detector_from_dict
from slipstream.monitoring.drift.statistics import evidence, primary
from slipstream.monitoring.exceptions import MonitoringError

SCORE: Final = "score"
ERROR_SUBJECT: Final = "brier"
MAX_OPEN: Final = 8  # windows open at once: input partitions may be up to 7 windows apart
_US: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class DriftSettings:
    """The monitor's knobs; :class:`MonitoringError` naming the field on a bad value."""

    window_s: int = 86_400
    fdr_q: float = 0.001
    min_window_n: int = 500
    error_detector: str = "adwin"
    flip_detector: str = "adwin"
    adwin_delta: float = 0.002
    ph_delta: float = 0.005
    ph_lambda: float = 50.0
    max_evidence: int = 10

    def __post_init__(self) -> None:
        checks = {
            "window_s": self.window_s > 0,
            "fdr_q": 0.0 < self.fdr_q < 1.0,
            "min_window_n": self.min_window_n >= 1,
            "error_detector": self.error_detector in DETECTORS,
            "flip_detector": self.flip_detector in DETECTORS,
            "adwin_delta": 0.0 < self.adwin_delta < 1.0,
            "ph_delta": self.ph_delta > 0.0,
            "ph_lambda": self.ph_lambda > 0.0,
            "max_evidence": self.max_evidence >= 1,
        }
        for name, ok in checks.items():
            if not ok:
                msg = f"DriftSettings.{name}={getattr(self, name)!r} is out of range"
                raise MonitoringError(msg)

    def detector(self, kind: str) -> PageHinkley | Adwin:
        if kind == "page_hinkley":
            return PageHinkley(delta=self.ph_delta, lambda_=self.ph_lambda)
        return Adwin(delta=self.adwin_delta)


@dataclass(slots=True)
class _Window:
    start: int
    n: int
    counts: list[list[int]]
    first: int = -1  # the earliest event time counted (µs)
    last: int = -1  # the latest


class DriftMonitor:
    """Drift of one (model_name, model_version) against its reference (module docstring)."""

    def __init__(
        self, reference: Mapping[str, Any], settings: DriftSettings, *, model_name: str, model_version: str
    ) -> None:
        self.settings = settings
        self.model_name, self.model_version = model_name, str(model_version)
        self.nulls: dict[str, SubjectNull] = calibrate(reference, settings.window_s, settings.min_window_n)
        self.subjects: list[str] = list(self.nulls)
        self._edges = [list(self.nulls[s].edges) for s in self.subjects]
        self._features = [(i, s) for i, s in enumerate(self.subjects) if s != SCORE]
        self._score_index = self.subjects.index(SCORE) if SCORE in self.subjects else -1
        self._step = settings.window_s * _US
        self._open: dict[int, _Window] = {}
        self._ready: list[_Window] = []
        self._closed_until: int | None = None
        self._started: int | None = None  # start of the first window this monitor opened
        self.late = 0
        self._detectors: dict[str, PageHinkley | Adwin] = {}
        self._since: dict[str, int] = {}

    @property
    def _id(self) -> str:
        return f"{self.model_name}@{self.model_version}"

    # --------------------------------------------------------------------------------------- predictions
    def _close_oldest(self) -> None:
        start = min(self._open)
        self._ready.append(self._open.pop(start))
        self._closed_until = start + self._step

    def observe_prediction(self, event_time_us: int, features: Mapping[str, float], score: float) -> None:
        """Count one champion prediction into its window (or into ``late``)."""
        start = event_time_us - event_time_us % self._step
        if (self._closed_until is not None and event_time_us < self._closed_until) or (
            self._open and start < min(self._open)
        ):
            self.late += 1
            return
        window = self._open.get(start)
        if window is None:
            window = _Window(start, 0, [[0] * (len(e) + 1) for e in self._edges], event_time_us, event_time_us)
            self._open[start] = window
            if self._started is None:
                self._started = start
            while len(self._open) > MAX_OPEN:
                self._close_oldest()
        window.n += 1
        if event_time_us < window.first:
            window.first = event_time_us
        if event_time_us > window.last:
            window.last = event_time_us
        counts, edges = window.counts, self._edges
        for i, name in self._features:
            value = features.get(name)
            if value is not None and math.isfinite(value):
                counts[i][bisect_right(edges[i], value)] += 1
        if self._score_index >= 0 and math.isfinite(score):
            counts[self._score_index][bisect_right(edges[self._score_index], score)] += 1

    def advance(self, watermark_us: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Close every window ending at or before ``watermark_us``: (drift_window dicts, drift_alarm dicts)."""
        for start in sorted(self._open):
            if start + self._step <= watermark_us:
                self._close_oldest()
        ready, self._ready = sorted(self._ready, key=lambda w: w.start), []
        windows: list[dict[str, Any]] = []
        alarms: list[dict[str, Any]] = []
        for window in ready:
            record, raised = self._test(window)
            windows.append(record)
            alarms.extend(raised)
        return windows, alarms

    def _test(self, window: _Window) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        end = window.start + self._step
        record: dict[str, Any] = {
            "window_id": f"{self._id}:{end}",
            "model_name": self.model_name,
            "model_version": self.model_version,
            "window_start": window.start,
            "window_end": end,
            "n": window.n,
            "subjects": [],
            "alarmed": False,
        }
        if window.n < self.settings.min_window_n or self._partial(window):
            return record, []
        rows: list[dict[str, Any]] = []
        tested: list[int] = []
        for i, name in enumerate(self.subjects):
            null, counts = self.nulls[name], window.counts[i]
            n = sum(counts)
            row: dict[str, Any] = {"subject": name, "statistic": null.statistic, "value": 0.0, "threshold": 0.0}
            row |= {"p_value": None, "moved": False, "others": {}}
            if n >= self.settings.min_window_n:
                row["value"] = primary(null.kind, null.counts, counts)
                row["p_value"] = null.p_value(row["value"], n)
                row["others"] = evidence(null.kind, null.counts, counts, null.edges)
                tested.append(i)
            rows.append(row)
        q = self.settings.fdr_q
        rejected = benjamini_hochberg([rows[i]["p_value"] for i in tested], q)
        for i, moved in zip(tested, rejected, strict=True):
            rows[i]["moved"] = moved
            rows[i]["threshold"] = self.nulls[self.subjects[i]].threshold(q / len(tested), sum(window.counts[i]))
        record["subjects"] = rows
        record["alarmed"] = any(rejected)
        return record, self._window_alarms(record, [rows[i] for i in tested])

    def _partial(self, window: _Window) -> bool:
        """Part of a window is not a window — its time-of-day mix alone would look like drift — so it closes untested:
        the monitor's first window when its predictions began more than an hour into it (a scorer started mid-day),
        and any window whose predictions stopped more than an hour before its end (the version was replaced)."""
        slack = self._step // 24
        first = window.start == self._started and window.first - window.start > slack
        return first or window.start + self._step - window.last > slack

    def _window_alarms(self, record: Mapping[str, Any], tested: list[dict[str, Any]]) -> list[dict[str, Any]]:
        def excess(row: Mapping[str, Any]) -> float:
            return float(row["value"]) / row["threshold"] if row["threshold"] > 0 else math.inf

        ranked = sorted(tested, key=lambda r: (-excess(r), r["subject"]))
        keys = ("subject", "statistic", "value", "threshold", "p_value", "moved")
        proof = [{k: row[k] for k in keys} for row in ranked[: self.settings.max_evidence]]
        alarms = []
        moved_features = [r for r in ranked if r["moved"] and r["subject"] != SCORE]
        moved_score = [r for r in ranked if r["moved"] and r["subject"] == SCORE]
        for kind, moved in (("FEATURE_DRIFT", moved_features), ("SCORE_DRIFT", moved_score)):
            if moved:
                top = moved[0]
                alarms.append(
                    {"alarm_id": f"{self._id}:{kind}:{top['subject']}:{record['window_end']}"}
                    | self._alarm(
                        kind, top["subject"], top["statistic"], top["value"], top["threshold"], top["p_value"]
                    )
                    | {
                        "nominal_false_alarm_rate": self.settings.fdr_q,
                        "window_start": record["window_start"],
                        "window_end": record["window_end"],
                        "n": record["n"],
                        "evidence": proof,
                    }
                )
        return alarms

    def _alarm(
        self, kind: str, subject: str, statistic: str, value: float, threshold: float, p_value: float | None
    ) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "model_version": self.model_version,
            "kind": kind,
            "subject": subject,
            "statistic": statistic,
            "value": float(value),
            "threshold": float(threshold),
            "p_value": p_value,
        }

    # ---------------------------------------------------------------------------------- change detectors
    def _detect(self, key: str, kind: str, subject: str, detector_kind: str, t: int, x: float) -> list[dict[str, Any]]:
        detector = self._detectors.get(key)
        if detector is None:
            detector = self._detectors[key] = self.settings.detector(detector_kind)
        self._since.setdefault(key, t)
        if not detector.update(x):
            return []
        alarm: dict[str, Any] = {"alarm_id": f"{self._id}:{kind}:{subject}:{t}"}
        alarm |= self._alarm(kind, subject, detector.name, detector.value, detector.threshold, None)
        alarm |= {"nominal_false_alarm_rate": detector.nominal_false_alarm_rate, "window_start": self._since.pop(key)}
        alarm |= {"window_end": t, "n": detector.n, "evidence": []}
        detector.after_alarm()
        return [alarm]

    def observe_outcome(self, event_time_us: int, score: float, label: bool) -> list[dict[str, Any]]:
        """The Brier error of a labelled champion prediction into the error detector: an ERROR_RATE alarm or none."""
        error = (float(score) - (1.0 if label else 0.0)) ** 2
        return self._detect("error", "ERROR_RATE", ERROR_SUBJECT, self.settings.error_detector, event_time_us, error)

    def observe_comparison(self, event_time_us: int, challenger_version: str, flip: bool) -> list[dict[str, Any]]:
        """A shadow comparison's flip into the challenger's detector: a FLIP_RATE alarm or none."""
        subject = str(challenger_version)
        x = 1.0 if flip else 0.0
        return self._detect(f"flip:{subject}", "FLIP_RATE", subject, self.settings.flip_detector, event_time_us, x)

    # ---------------------------------------------------------------------------------------- snapshots
    def to_bytes(self) -> bytes:
        """The mutable state as compact JSON (the calibration is rebuilt from the reference)."""
        state = {
            "model": [self.model_name, self.model_version],
            "subjects": self.subjects,
            "open": [
                [w.start, w.n, w.counts, w.first, w.last] for w in sorted(self._open.values(), key=lambda w: w.start)
            ],
            "ready": [[w.start, w.n, w.counts, w.first, w.last] for w in self._ready],
            "started": self._started,
            "closed_until": self._closed_until,
            "late": self.late,
            "detectors": {k: d.to_dict() for k, d in sorted(self._detectors.items())},
            "since": dict(sorted(self._since.items())),
        }
        return json.dumps(state, separators=(",", ":"), allow_nan=False).encode()

    @classmethod
    def from_bytes(cls, data: bytes, reference: Mapping[str, Any], settings: DriftSettings) -> DriftMonitor:
        """The monitor :meth:`to_bytes` wrote, for the same reference (refused if its subjects differ)."""
        state = json.loads(data)
        name, version = state["model"]
        out = cls(reference, settings, model_name=name, model_version=version)
        if state["subjects"] != out.subjects:
            msg = f"snapshot of {name}@{version} has subjects {state['subjects']}, the reference {out.subjects}"
            raise MonitoringError(msg)
        out._open = {int(w[0]): _window(w) for w in state["open"]}
        out._ready = [_window(w) for w in state["ready"]]
        out._started = state.get("started")
        out._closed_until = state["closed_until"]
        out.late = int(state["late"])
        out._detectors = {k: detector_from_dict(d) for k, d in state["detectors"].items()}
        out._since = {k: int(v) for k, v in state["since"].items()}
        return out


def _window(saved: list[Any]) -> _Window:
    start = int(saved[0])
    first = int(saved[3]) if len(saved) > 3 else start
    return _Window(start, int(saved[1]), saved[2], first, int(saved[4]) if len(saved) > 4 else first)


__all__ = ["DriftMonitor", "DriftSettings"]
