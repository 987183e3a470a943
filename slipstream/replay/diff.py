"""Recorded against replayed predictions, field by field (pure).

Predictions are matched by ``event_id`` (a prediction id also names the model version, which ``--model`` changes).
What must agree: the score and every feature (within :class:`Tolerance`), the decision and the model version, and
the set of scored events. What is reported but cannot fail a replay: ``feature_event_time`` and freshness, which
depend on how far the feature engine had got when the event was scored (wall-clock timing, in production too).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from slipstream.replay.exceptions import ToleranceError

MAX_LISTED = 10_000


@dataclass(frozen=True, slots=True)
class Tolerance:
    """Largest difference that still counts as equal: ``|a - b| <= abs + rel * max(|a|, |b|)``.

    The defaults are exact up to float64 summation noise: the scorer is deterministic (one-thread ONNX Runtime,
    ``math.fsum`` windows), so a replay of the same state and model gives the same bits; anything above 1e-9 is a
    real difference."""

    score_abs: float = 1e-9
    feature_abs: float = 1e-9
    feature_rel: float = 1e-9

    def __post_init__(self) -> None:
        for name in ("score_abs", "feature_abs", "feature_rel"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                msg = f"tolerance {name} must be a finite number >= 0, got {value!r}"
                raise ToleranceError(msg)

    def feature_equal(self, a: float, b: float) -> bool:
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return abs(a - b) <= self.feature_abs + self.feature_rel * max(abs(a), abs(b))


@dataclass
class Difference:
    event_id: str
    fields: list[str]
    recorded: dict[str, Any]
    replayed: dict[str, Any]
    features: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "fields": self.fields,
            "recorded": self.recorded,
            "replayed": self.replayed,
            "features": {k: list(v) for k, v in self.features.items()},
        }


@dataclass
class DiffSummary:
    recorded: int = 0
    replayed: int = 0
    matched: int = 0
    missing: list[str] = field(default_factory=list)  # recorded, never replayed
    extra: list[str] = field(default_factory=list)  # replayed, never recorded
    score: int = 0
    decision: int = 0
    model_version: int = 0
    features: int = 0  # predictions with at least one feature beyond tolerance
    by_feature: dict[str, int] = field(default_factory=dict)
    max_score_diff: float = 0.0
    max_feature_diff: float = 0.0
    timing_only: dict[str, int] = field(default_factory=dict)  # feature_event_time, freshness: reported only
    differences: list[Difference] = field(default_factory=list)

    @property
    def failing(self) -> int:
        """Predictions that differ in a field that must agree, plus those on one side only."""
        return (
            len({d.event_id for d in self.differences if set(d.fields) - TIMING}) + len(self.missing) + len(self.extra)
        )

    def to_dict(self, tolerance: Tolerance) -> dict[str, Any]:
        return {
            "recorded": self.recorded,
            "replayed": self.replayed,
            "matched": self.matched,
            "missing_in_replay": len(self.missing),
            "extra_in_replay": len(self.extra),
            "differences": {
                "score": self.score,
                "decision": self.decision,
                "model_version": self.model_version,
                "features": self.features,
                "by_feature": dict(sorted(self.by_feature.items())),
            },
            "timing_only": self.timing_only,
            "max_abs_score_diff": self.max_score_diff,
            "max_abs_feature_diff": self.max_feature_diff,
            "failing": self.failing,
            "tolerance": {
                "score_abs": tolerance.score_abs,
                "feature_abs": tolerance.feature_abs,
                "feature_rel": tolerance.feature_rel,
            },
            "missing_ids": self.missing[:MAX_LISTED],
            "extra_ids": self.extra[:MAX_LISTED],
            "listed": [d.to_dict() for d in self.differences[:MAX_LISTED]],
        }


TIMING = frozenset({"feature_event_time", "feature_freshness"})
SHOWN = ("prediction_id", "model_version", "score", "decision", "feature_event_time")


def _shown(p: Mapping[str, Any]) -> dict[str, Any]:
    return {k: p.get(k) for k in SHOWN}


def compare_one(recorded: Mapping[str, Any], replayed: Mapping[str, Any], tol: Tolerance) -> Difference | None:
    fields: list[str] = []
    a, b = float(recorded["score"]), float(replayed["score"])
    if not abs(a - b) <= tol.score_abs:
        fields.append("score")
    if bool(recorded["decision"]) != bool(replayed["decision"]):
        fields.append("decision")
    if str(recorded["model_version"]) != str(replayed["model_version"]):
        fields.append("model_version")
    feats: dict[str, tuple[float | None, float | None]] = {}
    fa, fb = recorded.get("features") or {}, replayed.get("features") or {}
    for name in sorted(set(fa) | set(fb)):
        x, y = fa.get(name), fb.get(name)
        if x is None or y is None or not tol.feature_equal(float(x), float(y)):
            feats[name] = (None if x is None else float(x), None if y is None else float(y))
    if feats:
        fields.append("features")
    if recorded.get("feature_event_time") != replayed.get("feature_event_time"):
        fields.append("feature_event_time")
    if dict(recorded.get("feature_freshness") or {}) != dict(replayed.get("feature_freshness") or {}):
        fields.append("feature_freshness")
    if not fields:
        return None
    return Difference(str(recorded["event_id"]), fields, _shown(recorded), _shown(replayed), feats)


def diff_predictions(
    recorded: Iterable[Mapping[str, Any]], replayed: Iterable[Mapping[str, Any]], tol: Tolerance | None = None
) -> DiffSummary:
    """Match by event id (the last replayed prediction of an event wins, as a consumer de-duplicating would see it)."""
    tol = tol or Tolerance()
    rec = {str(p["event_id"]): p for p in recorded}
    rep = {str(p["event_id"]): p for p in replayed}
    out = DiffSummary(recorded=len(rec), replayed=len(rep))
    out.missing = sorted(set(rec) - set(rep))
    out.extra = sorted(set(rep) - set(rec))
    for event_id in rec.keys() & rep.keys():
        a, b = rec[event_id], rep[event_id]
        out.matched += 1
        out.max_score_diff = max(out.max_score_diff, abs(float(a["score"]) - float(b["score"])))
        d = compare_one(a, b, tol)
        fa, fb = a.get("features") or {}, b.get("features") or {}
        for name in fa.keys() & fb.keys():
            x, y = float(fa[name]), float(fb[name])
            if not (math.isnan(x) or math.isnan(y)):
                out.max_feature_diff = max(out.max_feature_diff, abs(x - y))
        if d is None:
            continue
        out.differences.append(d)
        for name in ("score", "decision", "model_version"):
            if name in d.fields:
                setattr(out, name, getattr(out, name) + 1)
        if d.features:
            out.features += 1
            for name in d.features:
                out.by_feature[name] = out.by_feature.get(name, 0) + 1
        for name in TIMING & set(d.fields):
            out.timing_only[name] = out.timing_only.get(name, 0) + 1
    out.differences.sort(key=lambda d: d.event_id)
    return out
