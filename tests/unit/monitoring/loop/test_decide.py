"""The loop walked through its decisions on a synthetic world: triggers, the shadow gate, the rollback watch, and
the same decisions (and no new ones) when the history is replayed from scratch."""

from __future__ import annotations

import random
import tomllib

import pytest

from slipstream.monitoring.loop.decide import Decision, decide
from slipstream.monitoring.loop.policy import Policy, parse_policy
from slipstream.monitoring.loop.state import LoopState

from .world import World, alarm, day_us, model_event

POLICY = """
[triggers]
cooldown_days = 7
[triggers.drift]
min_alarms = 2
alarm_window_days = 3
[triggers.performance]
window_days = 14
min_labels = 500
min_positives = 20
margin = 0.1
[promotion.shadow]
min_labels = 400
min_positives = 20
max_flip_rate = 0.5
max_latency_p99_us = 2000
max_days = 21
[rollback]
min_labels = 400
min_positives = 20
margin = 0.05
max_days = 21
"""


def policy(**changes: object) -> Policy:
    """The test policy, with ``changes`` by dotted key (``promotion.shadow.min_labels``)."""
    data = tomllib.loads(POLICY)
    for dotted, value in changes.items():
        *path, key = dotted.split(".")
        table = data
        for part in path:
            table = table.setdefault(part, {})
        table[key] = value
    return parse_policy(POLICY) if not changes else Policy.model_validate(data)


def actions(decisions: list[Decision]) -> list[tuple[str, str, str]]:
    return [(d.action, d.version, d.evidence.get("code", "")) for d in decisions]


def drift_world(
    retrained: list[str], changes: dict[str, object] | None = None, latency_us: dict[str, float] | None = None
) -> World:
    """Champion 1, good (no performance trigger); two drift alarms on day 20; a retrain gives ``retrained``."""
    alarms = {20: [alarm("a1", "1", day_us(19.5)), alarm("a2", "1", day_us(20.5))]}
    quality = {"1": 0.5, "2": 0.7, "3": 0.2}
    world = World(policy(**(changes or {})), quality, alarms=alarms, cards={"1": 0.5}, retrained=list(retrained))
    world.latency_us.update(latency_us or {})
    return world


def test_good_performance_and_no_alarm_decide_nothing() -> None:
    world = World(policy(), quality={"1": 0.5}, cards={"1": 0.55})
    assert world.run(40) == []
    assert world.state.champion == "1" and world.state.labelled["1"]


def test_a_champion_below_its_validation_metric_is_retrained() -> None:
    world = World(policy(), quality={"1": 0.2}, cards={"1": 0.95})
    made = world.run(12)
    assert actions(made) == [("RETRAIN", "1", "performance")]
    (trigger,) = made[0].evidence["triggers"]
    assert trigger["labels"] >= 500 and trigger["positives"] >= 20 and trigger["realised"] < 0.95 - 0.1
    assert made[0].stream_time_us >= day_us(7)  # the first labels arrive 7 days after their events
    assert "realised average_precision" in made[0].reason


def test_drift_alarms_retrain_once_and_the_challenger_waits_for_its_labels() -> None:
    world = drift_world(retrained=["2"])
    made = world.run(26)
    assert actions(made) == [("RETRAIN", "1", "drift"), ("HOLD", "2", "awaiting_labels")]
    retrain = made[0]
    assert retrain.decision_id == "fraud:retrain:1" and retrain.model_action == "RETRAIN_STARTED"
    assert [a["alarm_id"] for a in retrain.evidence["triggers"][0]["alarms"]] == ["a1", "a2"]
    plan = retrain.evidence["plan"]
    assert plan["valid_to_us"] == retrain.stream_time_us - 7 * 86_400_000_000
    holdout = plan["valid_to_us"] - plan["valid_from_us"]
    assert holdout == 2 * 86_400_000_000  # the default holdout: the newest 2 mature days
    assert plan["valid_from_us"] - plan["train_from_us"] == 21 * 86_400_000_000
    assert world.state.shadows["2"].since_us == retrain.stream_time_us


def test_one_alarm_other_kinds_and_other_versions_do_not_trigger() -> None:
    alarms = {
        10: [alarm("a1", "1", day_us(10.5)), alarm("f1", "1", day_us(10.6), kind="FLIP_RATE")],
        11: [alarm("o1", "0", day_us(11.5))],
        16: [alarm("a2", "1", day_us(16.5))],  # 6 days after a1: outside the 3 days' window
    }
    world = World(policy(), quality={"1": 0.5}, alarms=alarms, cards={"1": 0.5})
    assert world.run(20) == []


def test_no_retrain_while_one_is_in_flight_nor_within_the_cooldown() -> None:
    state = LoopState(policy())
    state.update(model_event("PROMOTED", "1", event_id="by-hand"))
    state.update_all([alarm("a1", "1", day_us(1)), alarm("a2", "1", day_us(1.1))])
    (retrain,) = decide(state)
    started = model_event("RETRAIN_STARTED", "1", stream_us=retrain.stream_time_us, event_id=retrain.decision_id)
    state.update(started)
    assert state.retrain_in_flight and (state.retrains_started, state.retrains_ended) == (1, 0)
    state.update_all([alarm("a3", "1", day_us(2)), alarm("a4", "1", day_us(2.1))])
    assert decide(state) == []  # in flight: no second retrain
    state.update(model_event("RETRAIN_FAILED", "1", stream_us=day_us(2.2)))
    assert (state.retrains_started, state.retrains_ended) == (1, 1)  # no longer in flight
    assert decide(state) == []  # a3 and a4 came after the start, but within the 7 days' cooldown
    state.update_all([alarm("a5", "1", day_us(8.2)), alarm("a6", "1", day_us(8.3))])
    assert [(d.action, d.decision_id) for d in decide(state)] == [("RETRAIN", "fraud:retrain:2")]
    assert [a["alarm_id"] for a in decide(state)[0].evidence["triggers"][0]["alarms"]] == ["a5", "a6"]


def test_a_better_challenger_is_held_until_its_labels_mature_then_promoted() -> None:
    world = drift_world(retrained=["2"])
    made = world.run(33)
    assert actions(made) == [("RETRAIN", "1", "drift"), ("HOLD", "2", "awaiting_labels"), ("PROMOTE", "2", "passed")]
    promote = made[2]
    # 400 labels of events after the retrain (2 days of traffic), mature 7 days later
    assert promote.stream_time_us >= made[0].stream_time_us + 9 * 86_400_000_000
    values = promote.evidence["values"]
    assert values["2"] > values["1"] and promote.evidence["labels"] >= 400 and promote.evidence["positives"] >= 20
    assert promote.previous_version == "1" and promote.evidence["flip_rate"] <= 0.5
    assert world.state.champion == "2" and "1" in world.shadows  # the predecessor in shadow: the rollback watch
    assert world.state.watch is not None and world.state.watch.predecessor == "1"


def test_a_worse_challenger_is_rejected() -> None:
    world = drift_world(retrained=["3"])
    made = world.run(40)
    assert actions(made)[:3] == [("RETRAIN", "1", "drift"), ("HOLD", "3", "awaiting_labels"), ("REJECT", "3", "worse")]
    assert "3" in world.state.closed and "3" not in world.state.labelled and world.state.champion == "1"


def test_a_challenger_without_a_verdict_is_rejected_after_max_days() -> None:
    world = drift_world(retrained=["2"], changes={"promotion.shadow.min_labels": 100_000})
    made = world.run(45)
    assert actions(made)[:3] == [
        ("RETRAIN", "1", "drift"),
        ("HOLD", "2", "awaiting_labels"),
        ("REJECT", "2", "deadline"),
    ]
    assert made[2].stream_time_us >= made[0].stream_time_us + 21 * 86_400_000_000
    assert "no verdict within 21 days" in made[2].reason


@pytest.mark.parametrize(
    ("changes", "latency", "code"),
    [({"promotion.shadow.max_flip_rate": 0.0}, 80.0, "flip_rate"), ({}, 5_000.0, "latency")],
)
def test_a_better_challenger_is_refused_on_flip_rate_or_latency(
    changes: dict[str, object], latency: float, code: str
) -> None:
    world = drift_world(retrained=["2"], changes=changes, latency_us={"2": latency})
    made = world.run(40)
    assert actions(made)[2] == ("REJECT", "2", code)
    assert made[2].evidence["values"]["2"] > made[2].evidence["values"]["1"]  # better, refused all the same


def test_a_bad_promotion_is_rolled_back_once_its_labels_mature() -> None:
    world = World(policy(), quality={"1": 0.6, "2": 0.1}, cards={"1": 0.3, "2": 0.3})
    world.run(3)
    promoted = model_event("PROMOTED", "2", previous="1", stream_us=day_us(3), event_id="fraud:promote:2")
    world.state.update(promoted)  # as the loop would have: with a stream time
    world.champion, world.shadows = "2", ["1"]
    made = world.run(20)
    assert actions(made) == [("ROLLBACK", "1", "worse")]
    rollback = made[0]
    assert rollback.previous_version == "2" and rollback.model_action == "ROLLED_BACK"
    assert rollback.stream_time_us >= day_us(3 + 7 + 2)
    assert rollback.evidence["values"]["2"] < rollback.evidence["values"]["1"] - 0.05
    assert world.state.champion == "1" and world.state.watch is None and "2" in world.state.closed


def test_replaying_the_history_gives_the_same_decisions_and_no_new_ones() -> None:
    world = drift_world(retrained=["2"])
    made = world.run(60)
    assert actions(made) == [
        ("RETRAIN", "1", "drift"),
        ("HOLD", "2", "awaiting_labels"),
        ("PROMOTE", "2", "passed"),
        ("KEEP", "1", "passed"),  # the watch ends: 2 is better than 1, its predecessor leaves the shadow
    ]
    # step by step, as the loop would have read it: the same decisions at the same steps
    replay = LoopState(world.policy)
    for step in world.steps:
        replay.update_all(step.records)
        again = decide(replay) if step.day >= 0 else []
        assert [(d.decision_id, d.reason, d.evidence) for d in again] == [
            (d.decision_id, d.reason, d.evidence) for d in step.decisions
        ]
        replay.update_all(step.written)
    assert decide(replay) == []
    # all at once, topics interleaved at random (model-events in their order: one partition), a third re-delivered
    records = world.history()
    events = [r for r in records if "action" in r]
    data = [r for r in records if "action" not in r]
    data += data[-len(data) // 3 :]
    rng = random.Random(5)
    rng.shuffle(data)
    for i, event in enumerate(sorted(rng.sample(range(len(data) + len(events)), len(events)))):
        data.insert(event, events[i])
    restarted = LoopState(world.policy).update_all(data)
    assert decide(restarted) == []
    assert (restarted.champion, restarted.shadows, restarted.watch) == ("2", {}, None)
    assert restarted.watermark_us == world.state.watermark_us and restarted.duplicates > 0
    # what the state answers does not depend on the order it read the records in; 1 left the shadow: nothing kept
    assert sorted(restarted.scores("2", 0)) == sorted(world.state.scores("2", 0)) != []
    assert restarted.closed == world.state.closed == {"1"} and "1" not in restarted.labelled
