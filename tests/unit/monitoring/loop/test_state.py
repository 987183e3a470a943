"""LoopState: records as the contracts decode them, re-deliveries, other models, retention, hand-made changes; and the
evidence helpers the gates use."""

from __future__ import annotations

import json
import math
import random
from datetime import datetime
from typing import Any

import pytest

from slipstream.monitoring.exceptions import MonitoringError
from slipstream.monitoring.figures import DAY_US
from slipstream.monitoring.loop.decide import decide
from slipstream.monitoring.loop.evidence import p99, paired, prefix, to_json
from slipstream.monitoring.loop.policy import Policy
from slipstream.monitoring.loop.state import LoopState, Watch
from slipstream.schemas.contracts import Contracts

from .test_decide import drift_world, policy
from .world import MODEL, World, alarm, comparison, day_us, make_outcome, model_event


def _through_the_contracts(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each record encoded with its topic's Avro contract and decoded back (times become tz-aware datetimes)."""
    contracts = Contracts.default()
    serdes = {t: contracts.serde(t) for t in ("model-events", "drift", "outcomes", "shadow-comparisons")}
    out = []
    for r in records:
        topic = next(
            t
            for f, t in (
                ("alarm_id", "drift"),
                ("outcome_id", "outcomes"),
                ("comparison_id", "shadow-comparisons"),
                ("action", "model-events"),
            )
            if f in r
        )
        out.append(serdes[topic].decode(serdes[topic].encode(r)))
    return out


def test_records_decoded_by_the_contracts_give_the_same_state_and_decisions() -> None:
    world = drift_world(["2"])
    world.run(40)
    decoded = _through_the_contracts(world.history())
    assert all(isinstance(r["stream_time"], datetime) for r in decoded if r.get("stream_time") is not None)
    times = [r.get("event_time", r.get("window_end")) for r in decoded]
    assert all(isinstance(t, datetime) and t.tzinfo for t in times)
    state = LoopState(world.policy).update_all(decoded)
    assert (state.watermark_us, state.champion, state.watch) == (world.state.watermark_us, "2", world.state.watch)
    assert sorted(state.scores("2", 0)) == sorted(world.state.scores("2", 0))
    assert decide(state) == decide(world.state)
    written = [r for s in world.steps for r in s.written]
    assert {r["action"] for r in written} >= {"RETRAIN_STARTED", "RETRAINED", "PROMOTION_HELD", "PROMOTED"}
    assert all(json.loads(r["evidence"])["code"] for r in written if r["evidence"])


def test_re_deliveries_other_models_and_unknown_records() -> None:
    state = LoopState(policy())
    a1 = alarm("a1", "1", day_us(1))
    state.update_all([a1, a1, {**alarm("x", "1", day_us(1)), "model_name": "reco"}])
    assert (len(state.alarms), state.duplicates, state.ignored, state.counts["alarms"]) == (1, 1, 1, 2)
    with pytest.raises(MonitoringError, match=r"not a model event, drift alarm, outcome or comparison.*'foo'"):
        state.update({"foo": 1})
    event = model_event("PROMOTED", "4", event_id="e1")
    state.update_all([event, {**event, "version": "5"}])  # the same event id: read once
    assert state.champion == "4" and state.recorded == {"e1"}


def test_the_champion_before_any_promotion_is_the_newest_champion_prediction() -> None:
    state = LoopState(policy())
    older = make_outcome("e0", day_us(1), 1, "6", "CHAMPION", 0.2, False, day_us(8))
    c8 = comparison("e1", day_us(2), "8", "10", 0.1, 0.2, 50.0)
    c9 = comparison("e2", day_us(3), "9", "10", 0.1, 0.2, 50.0)
    state.update_all([c9, c8, older])
    assert state.champion == "9"  # newest by event time, whatever the reading order
    assert LoopState(policy()).update_all([older, c8, c9]).champion == "9"
    state.update(model_event("PROMOTED", "3", event_id="hand"))
    assert state.champion == "3" and state.watch is None  # by hand: no stream time, no rollback watch


def test_hand_made_rollback_and_removal_close_versions_and_forget_their_rows() -> None:
    world = drift_world(["2"])
    world.run(30)  # 2 is in shadow, held
    state = world.state
    assert "2" in state.shadows and state.labelled["2"]
    state.update(model_event("CHALLENGER_REMOVED", "2", alias="challenger", event_id="by-hand-removal"))
    assert "2" in state.closed and "2" not in state.labelled and "2" not in state.compared and not state.shadows
    state.update_all(world.traffic(30))  # its late outcomes are ignored
    assert "2" not in state.labelled
    state.update(model_event("PROMOTED", "5", previous="1", stream_us=day_us(31), event_id="p5"))
    assert state.watch is not None and state.watch.predecessor == "1"
    state.update(model_event("ROLLED_BACK", "1", previous="5", event_id="r1"))
    assert (state.champion, _watch(state)) == ("1", None) and "5" in state.closed


def _watch(state: LoopState) -> Watch | None:
    return state.watch  # read afresh (a type checker keeps an attribute narrowed across calls)


def test_rows_and_alarms_older_than_the_retention_are_dropped() -> None:
    short = {"triggers.performance.window_days": 3.0, "promotion.shadow.max_days": 3.0, "rollback.max_days": 3.0}
    world = World(policy(**short), {"1": 0.5}, delay_days=1.0)
    world.run(20)
    state = world.state
    assert state.policy.retention_days == 3.0 and state.cutoff_us is not None
    oldest = min(row[0] for row in state.labelled["1"].values())
    assert oldest >= state.cutoff_us - 3_600_000_000  # pruned at least every hour of event time
    assert len(state.labelled["1"]) <= 4 * world.per_day
    assert state.watermark_us is not None
    state.update(alarm("old", "1", state.watermark_us - 10 * DAY_US))
    assert "old" not in state.alarms and state.ignored > 0


def test_a_scheduled_retrain_counts_from_the_last_retrain_or_promotion() -> None:
    state = LoopState(policy(**{"triggers.schedule_days": 10.0}))
    state.update(model_event("PROMOTED", "1", previous="0", stream_us=day_us(0), event_id="p1"))
    state.update(model_event("CHALLENGER_REMOVED", "0", event_id="keep"))  # the watch of 1 ended
    state.update(alarm("tick", "0", day_us(9.9)))  # only moves the clock: another version's alarm
    assert decide(state) == []
    state.update(alarm("tock", "0", day_us(10)))
    (retrain,) = decide(state)
    assert (retrain.action, retrain.evidence["code"], retrain.evidence["triggers"][0]["since_us"]) == (
        "RETRAIN",
        "schedule",
        day_us(0),
    )


def test_a_promotion_without_a_verdict_stands_after_max_days() -> None:
    state = LoopState(policy())
    state.update(model_event("PROMOTED", "2", previous="1", stream_us=day_us(0), event_id="p2"))
    state.update(alarm("tick", "0", day_us(20.9)))
    assert decide(state) == []
    state.update(alarm("tock", "0", day_us(21)))
    (keep,) = decide(state)
    assert (keep.action, keep.version, keep.previous_version, keep.evidence["code"]) == ("KEEP", "1", "2", "deadline")
    assert keep.model_action == "CHALLENGER_REMOVED" and keep.event_fields()["event_id"] == "fraud:keep:2@" + str(
        day_us(0)
    )


def test_a_gate_judges_the_same_prefix_in_any_order_and_later_rows_do_not_change_it() -> None:
    rng = random.Random(3)
    rows = [(i // 10, f"e{i}", i % 7, i % 9 == 0, rng.random(), rng.random()) for i in range(100)]
    chosen, n, positives = prefix(rows, 30, 5)
    assert chosen is not None and (n, positives) == (37, 5) and chosen == sorted(chosen)
    shuffled = rows[:]
    rng.shuffle(shuffled)
    assert prefix(shuffled, 30, 5)[0] == chosen
    assert prefix(rows + [(999, "late", 1, True, 0.5, 0.5)], 30, 5)[0] == chosen
    assert prefix(rows, 200, 5) == (None, 100, 12)
    ap = paired("average_precision", chosen)
    card = paired("card_precision_at_100", chosen)
    assert ap.n == card.n == 37 and ap.a is not None and 0 < ap.a <= 1 and card.a is not None
    assert paired("average_precision", [r for r in rows if not r[3]]).a is None  # no fraud: undefined, not 0
    assert ap.as_dict("2", "1")["values"].keys() == {"2", "1"}


def test_p99_is_a_value_that_occurred_and_json_refuses_nan() -> None:
    assert p99([]) is None and p99([5.0]) == 5.0
    assert p99(float(v) for v in range(1, 101)) == 99.0 and p99(float(v) for v in range(1, 1001)) == 990.0
    assert to_json({"b": 1, "a": [0.5]}) == '{"a":[0.5],"b":1}'
    with pytest.raises(ValueError, match="Out of range float"):
        to_json({"x": math.nan})


def test_policy_of_the_state_is_the_default_for_decide() -> None:
    state = LoopState(Policy())
    assert decide(state) == [] and state.model == MODEL and state.watermark_us is None


def test_gates_pair_every_shadowed_event_and_take_an_unreported_one_as_genuine() -> None:
    """With realistic delays frauds are reported within days and genuine transactions confirmed at 30: the gates pair
    every event both versions scored (from the comparisons) and count one with no fraud report as genuine."""
    state = LoopState(Policy())
    records = [comparison(f"e{i}", day_us(1) + i, "1", "2", 0.1 * (i % 10), 0.05 * (i % 10), 80.0) for i in range(50)]
    frauds = [make_outcome(f"e{i}", day_us(1) + i, 7, "1", "CHAMPION", 0.9, True, day_us(3)) for i in (9, 19, 29)]
    state.update_all([*records, *frauds])
    rows = state.paired_rows("2", "1", day_us(0), day_us(2))
    assert len(rows) == 50 and sum(r[3] for r in rows) == 3
    by_id = {r[1]: r for r in rows}
    assert by_id["e9"][4:] == (0.45, 0.9)  # (challenger 2's score, champion 1's) in the order asked
    assert state.paired_rows("1", "2", day_us(0), day_us(2))[0][4:] == rows[0][4:][::-1]
