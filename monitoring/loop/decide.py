"""The closed loop's decisions: a pure function of a :class:`LoopState` and a :class:`Policy`.

``decide(state, policy)`` returns what is due now, in event time (the state's watermark), each decision at most once:

* **ROLLBACK / KEEP** (rollback watch, after a promotion by the loop; the predecessor stays in shadow): on the
  shortest event-time prefix of *mature* events (older than ``retrain.label_maturity_days``) labelled for both
  versions with ``rollback.min_labels`` rows and ``rollback.min_positives`` frauds, the new champion's metric
  below the predecessor's minus ``rollback.margin`` is a ROLLBACK (model action ROLLED_BACK); otherwise, or when no
  verdict came within ``rollback.max_days``, KEEP ends the watch (CHALLENGER_REMOVED of the predecessor's alias).
* **PROMOTE / REJECT / HOLD** (shadow gate, for each challenger the loop trained): on the same kind of prefix
  (``promotion.shadow``), the challenger's metric >= champion's + margin, the flip rate of its comparisons up to the
  prefix's last event <= ``max_flip_rate`` and their p99 latency <= ``max_latency_p99_us`` promote it; any of the
  three failing rejects it (CHALLENGER_REJECTED); no verdict within ``max_days``: rejected. Until then one HOLD
  (PROMOTION_HELD) per challenger and reason (``awaiting_labels``, ``awaiting_comparisons``).
* **RETRAIN** (RETRAIN_STARTED), when nothing of the loop is under way (no retrain in flight, no challenger of the
  loop in shadow, no rollback watch) and the last retrain started ``cooldown_days`` ago or more: drift alarms
  (``min_alarms`` of the champion of the configured kinds within ``alarm_window_days``, raised after the last
  retrain started), the champion's realised metric over its labelled predictions of the last ``window_days``
  below its model card's minus ``margin``, or the schedule.

**Why the same history gives the same decisions.** The state is a function of the records read, not of their order
(see :mod:`~slipstream.monitoring.loop.state`), and ``decide`` a function of the state. Gates judge a prefix of
mature events, which later labels do not change, so a verdict reached live is reached again on a replay. And every
decision, once written on ``model-events`` (its ``decision_id`` as the event id), changes the state so that it is
not due any more: a RETRAIN_STARTED makes a retrain in flight, then a cooldown; a PROMOTED, CHALLENGER_REJECTED or
ROLLED_BACK closes its gate; a PROMOTION_HELD is remembered by (version, code). Decisions whose id the state has
read are dropped besides. A restart therefore reads ``model-events`` (all of it: a handful of records a day),
``drift``, ``outcomes`` and ``shadow-comparisons`` (from ``policy.retention_days`` of event time back), then
decides: exactly what was due and not yet written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from slipstream.monitoring.loop.evidence import metric, p99, paired, prefix, to_json
from slipstream.monitoring.loop.policy import Policy
from slipstream.monitoring.loop.state import LoopState, Shadow, Watch, days_us

__all__ = ["MODEL_ACTIONS", "Action", "Decision", "decide"]

Action = Literal["RETRAIN", "PROMOTE", "HOLD", "REJECT", "ROLLBACK", "KEEP"]
MODEL_ACTIONS: Final[Mapping[str, str]] = {
    "RETRAIN": "RETRAIN_STARTED",
    "PROMOTE": "PROMOTED",
    "HOLD": "PROMOTION_HELD",
    "REJECT": "CHALLENGER_REJECTED",
    "ROLLBACK": "ROLLED_BACK",
    "KEEP": "CHALLENGER_REMOVED",
}
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Decision:
    """One decision. ``version`` / ``previous_version`` as the model event writes them: RETRAIN: the champion it
    would replace / None; PROMOTE, HOLD, REJECT: the challenger / the champion; ROLLBACK: the version restored /
    the champion rolled back from; KEEP: the predecessor leaving the shadow / the champion kept."""

    action: Action
    model: str
    version: str
    previous_version: str | None
    reason: str
    stream_time_us: int
    decision_id: str
    evidence: Mapping[str, Any] = field(default_factory=dict)

    @property
    def model_action(self) -> str:
        return MODEL_ACTIONS[self.action]

    def event_fields(self) -> dict[str, Any]:
        """The fields of its model event the decision determines (the host adds alias, artifact, checksum, actor
        and the wall clock ``event_time``)."""
        return {
            "event_id": self.decision_id,
            "action": self.model_action,
            "model_name": self.model,
            "version": self.version,
            "previous_version": self.previous_version,
            "reason": self.reason,
            "evidence": to_json(self.evidence),
            "stream_time": self.stream_time_us,
        }


def decide(state: LoopState, policy: Policy | None = None) -> list[Decision]:
    """What is due at the state's watermark and not yet recorded (see the module); ``policy`` defaults to the
    state's."""
    policy = policy or state.policy
    now, champion = state.watermark_us, state.champion
    if now is None or champion is None:
        return []
    out: list[Decision] = []
    if state.watch is not None:
        verdict = _rollback(state, policy, now, state.watch)
        if verdict is not None:
            out.append(verdict)
    if not any(d.action == "ROLLBACK" for d in out):
        for version in sorted(state.shadows):
            gate = _shadow_gate(state, policy, now, champion, state.shadows[version])
            if gate is not None:
                out.append(gate)
        retrain = _retrain(state, policy, now, champion)
        if retrain is not None:
            out.append(retrain)
    return [d for d in out if d.decision_id not in state.recorded]


def _iso(us: int) -> str:
    return (_EPOCH + timedelta(microseconds=us)).isoformat()


def _mature_before(state: LoopState, policy: Policy, now: int) -> int:
    return now - days_us(policy.retrain.label_maturity_days)


# ---------------------------------------------------------------------------------------------- rollback watch
def _rollback(state: LoopState, policy: Policy, now: int, watch: Watch) -> Decision | None:
    rule = policy.rollback
    new, old = watch.champion, watch.predecessor
    before = _mature_before(state, policy, now)
    candidates = state.paired_rows(new, old, watch.since_us, before)
    rows, n, positives = prefix(candidates, rule.min_labels, rule.min_positives)
    evidence: dict[str, Any] = {
        "rule": rule.model_dump(mode="json"),
        "watch_since_us": watch.since_us,
        "mature_before_us": before,
        "watermark_us": now,
    }
    keep_id = f"{state.model}:keep:{new}@{watch.since_us}"
    if rows is None:
        if now < watch.since_us + days_us(rule.max_days):
            return None
        evidence |= {"code": "deadline", "labels": n, "positives": positives}
        reason = (
            f"rollback watch of {new} ends without a verdict after {rule.max_days:g} days: {n:,} of "
            f"{rule.min_labels:,} mature events labelled for both, {positives:,} of {rule.min_positives:,} frauds"
        )
        return Decision("KEEP", state.model, old, new, reason, now, keep_id, evidence)
    result = paired(rule.metric, rows)
    evidence |= result.as_dict(new, old)
    a, b = _value(result.a), _value(result.b)
    same = f"on the same {result.n:,} events ({result.positives:,} frauds)"
    if a < b - rule.margin:
        evidence["code"] = "worse"
        reason = f"champion {new} {rule.metric} {a:.4f} < predecessor {old} {b:.4f} - {rule.margin:g} {same}"
        rollback_id = f"{state.model}:rollback:{new}@{watch.since_us}"
        return Decision("ROLLBACK", state.model, old, new, reason, now, rollback_id, evidence)
    evidence["code"] = "passed"
    reason = f"champion {new} {rule.metric} {a:.4f} >= predecessor {old} {b:.4f} - {rule.margin:g} {same}: it stays"
    return Decision("KEEP", state.model, old, new, reason, now, keep_id, evidence)


def _value(value: float | None) -> float:
    """A gate's metric: defined, since its rows hold at least one fraud (min_positives >= 1)."""
    return 0.0 if value is None else value


# ---------------------------------------------------------------------------------------------- shadow gate
def _shadow_gate(state: LoopState, policy: Policy, now: int, champion: str, shadow: Shadow) -> Decision | None:
    gate = policy.promotion.shadow
    version = shadow.version
    before = _mature_before(state, policy, now)
    deadline = shadow.since_us + days_us(gate.max_days)
    evidence: dict[str, Any] = {
        "gate": gate.model_dump(mode="json"),
        "shadow_since_us": shadow.since_us,
        "deadline_us": deadline,
        "mature_before_us": before,
        "watermark_us": now,
    }
    action, code, reason = _judge(state, policy, now, champion, shadow, evidence)
    if action == "HOLD" and (version, code) in state.held:
        return None
    suffix = {"HOLD": f"hold:{version}:{code}", "REJECT": f"reject:{version}", "PROMOTE": f"promote:{version}"}
    decision_id = f"{state.model}:{suffix[action]}"
    return Decision(action, state.model, version, champion, reason, now, decision_id, evidence | {"code": code})


def _judge(
    state: LoopState, policy: Policy, now: int, champion: str, shadow: Shadow, evidence: dict[str, Any]
) -> tuple[Action, str, str]:
    """(action, code, reason) of the shadow gate; adds its numbers to ``evidence``."""
    gate, version = policy.promotion.shadow, shadow.version
    late = now >= evidence["deadline_us"]
    candidates = state.paired_rows(version, champion, shadow.since_us, evidence["mature_before_us"])
    rows, n, positives = prefix(candidates, gate.min_labels, gate.min_positives)
    if rows is None:
        evidence |= {"labels": n, "positives": positives}
        counts = (
            f"{n:,} of {gate.min_labels:,} mature events labelled for both, {positives:,} of "
            f"{gate.min_positives:,} frauds"
        )
        if late:
            return "REJECT", "deadline", f"challenger {version}: no verdict within {gate.max_days:g} days ({counts})"
        return "HOLD", "awaiting_labels", f"challenger {version} held: {counts}"
    result = paired(gate.metric, rows)
    evidence |= result.as_dict(version, champion)
    compared = state.comparisons(version, champion, shadow.since_us, rows[-1][0])
    flip_rate = sum(c[2] for c in compared) / len(compared) if compared else None
    latency = p99(c[3] for c in compared)
    evidence |= {"comparisons": len(compared), "flip_rate": flip_rate, "latency_p99_us": latency}
    if flip_rate is None or latency is None:
        if late:
            return "REJECT", "deadline", f"challenger {version}: no comparisons within {gate.max_days:g} days"
        return "HOLD", "awaiting_comparisons", f"challenger {version} held: none of its comparisons read yet"
    a, b = _value(result.a), _value(result.b)
    same = f"on the same {result.n:,} events ({result.positives:,} frauds)"
    if a < b + gate.margin:
        vs = f"{a:.4f} < champion {champion} {b:.4f} + {gate.margin:g}"
        return "REJECT", "worse", f"challenger {version} {gate.metric} {vs} {same}"
    if flip_rate > gate.max_flip_rate:
        rates = f"{flip_rate:.2%} of decisions > {gate.max_flip_rate:.2%}"
        return "REJECT", "flip_rate", f"challenger {version} flips {rates} ({len(compared):,} comparisons)"
    if latency > gate.max_latency_p99_us:
        slow = f"{latency:.0f} us > {gate.max_latency_p99_us:.0f} us"
        return "REJECT", "latency", f"challenger {version} p99 latency {slow} ({len(compared):,} comparisons)"
    vs = f"{a:.4f} >= champion {champion} {b:.4f} + {gate.margin:g}"
    return "PROMOTE", "passed", f"challenger {version} {gate.metric} {vs} {same}; flips {flip_rate:.2%}"


# ---------------------------------------------------------------------------------------------- retrain
def _retrain(state: LoopState, policy: Policy, now: int, champion: str) -> Decision | None:
    triggers = policy.triggers
    if state.retrain_in_flight or state.shadows or state.watch is not None:
        return None
    last = state.last_retrain_us
    if last is not None and now < last + days_us(triggers.cooldown_days):
        return None
    fired: list[dict[str, Any]] = []
    reasons: list[str] = []
    for check in (_drift, _performance, _schedule):
        found = check(state, policy, now, champion)
        if found is not None:
            fired.append(found[0])
            reasons.append(found[1])
    if not fired:
        return None
    retrain = policy.retrain
    valid_to = now - days_us(retrain.label_maturity_days)
    valid_from = valid_to - days_us(retrain.valid_days)
    train_from = valid_from - days_us(retrain.window_days)
    decision_id = f"{state.model}:retrain:{state.retrains_started + 1}"
    plan = {
        "retrain_id": decision_id,
        "known_by_us": now,
        "train_from_us": train_from,
        "valid_from_us": valid_from,
        "valid_to_us": valid_to,
        "window": [_iso(train_from), _iso(valid_to)],
        "rounds": retrain.rounds,
        "refit": retrain.refit,
        "params": dict(retrain.params),
        "offline": policy.promotion.offline.model_dump(mode="json"),
    }
    evidence = {"code": fired[0]["trigger"], "triggers": fired, "plan": plan, "watermark_us": now}
    return Decision("RETRAIN", state.model, champion, None, "; ".join(reasons), now, decision_id, evidence)


Found = tuple[dict[str, Any], str] | None


def _drift(state: LoopState, policy: Policy, now: int, champion: str) -> Found:
    rule = policy.triggers.drift
    since = now - days_us(rule.alarm_window_days)
    last = state.last_retrain_us
    alarms = sorted(
        (
            a
            for a in state.alarms.values()
            if a.kind in rule.kinds
            and a.model_version == champion
            and since < a.window_end_us <= now
            and (last is None or a.window_end_us > last)
        ),
        key=lambda a: (a.window_end_us, a.alarm_id),
    )
    if not alarms or len(alarms) < rule.min_alarms:
        return None
    listed = [
        {"alarm_id": a.alarm_id, "kind": a.kind, "subject": a.subject, "value": a.value, "threshold": a.threshold}
        for a in alarms
    ]
    kinds = ", ".join(sorted({f"{a.kind} {a.subject}" for a in alarms}))
    reason = f"{len(alarms)} drift alarms of champion {champion} within {rule.alarm_window_days:g} days ({kinds})"
    return {"trigger": "drift", "alarms": listed, "min_alarms": rule.min_alarms}, reason


def _performance(state: LoopState, policy: Policy, now: int, champion: str) -> Found:
    rule = policy.triggers.performance
    card = state.cards.get(champion, {}).get(rule.metric)
    if not rule.enabled or card is None:
        return None
    since = now - days_us(rule.window_days)
    scored = sorted(((row[0], key, row[1], row[2], row[3]) for key, row in state.scores(champion, since)))
    positives = sum(r[3] for r in scored)
    if len(scored) < rule.min_labels or positives < rule.min_positives:
        return None
    times, customers = [r[0] for r in scored], [r[2] for r in scored]
    realised = metric(rule.metric, times, customers, [r[3] for r in scored], [r[4] for r in scored])
    if realised is None or realised >= card - rule.margin:
        return None
    found = {"trigger": "performance", "metric": rule.metric, "realised": round(realised, 6), "validation": card}
    found |= {"margin": rule.margin, "labels": len(scored), "positives": positives, "since_us": since}
    reason = (
        f"champion {champion} realised {rule.metric} {realised:.4f} < validation {card:.4f} - {rule.margin:g} "
        f"on its {len(scored):,} labelled predictions of {rule.window_days:g} days ({positives:,} frauds)"
    )
    return found, reason


def _schedule(state: LoopState, policy: Policy, now: int, champion: str) -> Found:
    every = policy.triggers.schedule_days
    marks = [t for t in (state.last_retrain_us, state.champion_since_us) if t is not None]
    start = max(marks) if marks else state.first_us
    if every <= 0 or start is None or now - start < days_us(every):
        return None
    reason = f"scheduled: {every:g} days since {_iso(start)} (champion {champion})"
    return {"trigger": "schedule", "schedule_days": every, "since_us": start}, reason
