"""The shadow handler without a broker: batches in, comparisons, dead letters and changelog entries out."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pytest

from slipstream.monitoring.shadow.challengers import ChallengerSet
from slipstream.monitoring.shadow.consumer import MISSING_ITEM_FEATURES, MISSING_VECTOR, JoinBound, ShadowHandler
from slipstream.monitoring.transactional import Emitted
from slipstream.schemas.contracts import Contracts
from tests.samples import sample
from tests.unit.monitoring.shadow_world import Linear, challenger, event, prediction, vector

NOW = datetime(2026, 1, 1, tzinfo=UTC)
OLD = {"a": 1.0, "b": 2.0}
BOUND = JoinBound(100, 10.0)


@pytest.fixture
def contracts() -> Contracts:
    return Contracts.default("unit.")


def _handler(contracts: Contracts, *challengers: Any, bound: JoinBound = BOUND) -> ShadowHandler:
    live = ChallengerSet()
    for c in challengers:
        live.put(c)
    handler = ShadowHandler(contracts, live, bound, clock=lambda: NOW)
    handler.assign(0, {})
    return handler


def _records(out: Emitted, topic: str) -> list[dict[str, Any]]:
    return [dict(r) for t, r in out.records if t == topic]


def _latest(changelogs: Iterable[Emitted]) -> dict[bytes, bytes]:
    state: dict[bytes, bytes] = {}
    for out in changelogs:
        for _, key, value in out.changelog:
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
    return state


def test_every_challenger_scores_the_champions_vector(contracts: Contracts) -> None:
    b, c = (
        challenger(["b", "a"], [1.0, 0.0], alias="challenger"),
        challenger(["a"], [0.1], alias="challenger-b", version="8"),
    )
    handler = _handler(contracts, b, c)
    out = handler.process([event(contracts, "predictions", prediction(i, OLD), i) for i in range(5)])
    got = _records(out, "shadow-comparisons")
    assert sorted(r["comparison_id"] for r in got) == sorted(f"{i}@3~{v}" for i in range(5) for v in ("7", "8"))
    assert {r["challenger_score"] for r in got if r["challenger_version"] == "7"} == {2.0}
    assert all(r["feature_source"] == "PREDICTION" for r in got)
    assert isinstance(b.scorer, Linear) and b.scorer.calls == 1 and isinstance(c.scorer, Linear) and c.scorer.calls == 1
    assert out.changelog == []  # nothing to join: no state


def test_a_new_feature_comes_from_the_feature_log_in_either_order(contracts: Contracts) -> None:
    c = challenger(["a", "new"], [1.0, 10.0])
    handler = _handler(contracts, c)
    first = handler.process(
        [
            event(contracts, "feature-log", vector(1, {"a": 1.0, "new": 0.5}), 0),
            event(contracts, "predictions", prediction(1, OLD), 0),
        ]
    )
    assert [
        (r["comparison_id"], r["challenger_score"], r["feature_source"]) for r in _records(first, "shadow-comparisons")
    ] == [("1@3~7", 6.0, "FEATURE_LOG")]
    parked = handler.process([event(contracts, "predictions", prediction(2, OLD), 1)])
    assert _records(parked, "shadow-comparisons") == [] and handler.joins[0].parked
    done = handler.process([event(contracts, "feature-log", vector(2, {"a": 2.0, "new": 1.0}), 1)])
    assert [(r["comparison_id"], r["challenger_score"]) for r in _records(done, "shadow-comparisons")] == [
        ("2@3~7", 12.0)
    ]
    assert not handler.joins[0].parked
    assert handler.join_counts().joined == 1 and handler.counts.from_feature_log == 2


def test_a_prediction_whose_vector_never_comes_is_dead_lettered_whole(contracts: Contracts) -> None:
    handler = _handler(contracts, challenger(["a", "new"], [1.0, 1.0]), bound=JoinBound(100, 10.0))
    late = prediction(1, OLD, seconds=0)
    handler.process([event(contracts, "predictions", late, 0)])
    out = handler.process([event(contracts, "feature-log", vector(2, {"a": 1.0, "new": 1.0}, seconds=11), 5)])
    dead = _records(out, "dead-letter")
    assert len(dead) == 1 and dead[0]["error_type"] == MISSING_VECTOR
    assert contracts.serde("predictions").decode(dead[0]["original_value"])["prediction_id"] == "1@3"
    assert (dead[0]["source_topic"], dead[0]["source_offset"]) == (contracts.topic("predictions"), 0)
    assert "challenger (v7)" in dead[0]["reason"]
    assert handler.join_counts().expired == 1 and handler.counts.dead_lettered == 1


def test_the_entry_bound_dead_letters_the_oldest_parked(contracts: Contracts) -> None:
    handler = _handler(contracts, challenger(["new"], [1.0]), bound=JoinBound(2, 3600.0))
    out = handler.process([event(contracts, "predictions", prediction(i, OLD), i) for i in range(3)])
    dead = _records(out, "dead-letter")
    assert [contracts.serde("predictions").decode(d["original_value"])["event_id"] for d in dead] == ["0"]
    assert len(handler.joins[0]) == 2


def test_a_restart_restores_parked_predictions_from_the_changelog(contracts: Contracts) -> None:
    c = challenger(["a", "new"], [1.0, 1.0])
    before = _handler(contracts, c)
    written = [before.process([event(contracts, "predictions", prediction(i, OLD), i)]) for i in range(3)]
    written.append(before.process([event(contracts, "feature-log", vector(0, {"a": 1.0, "new": 1.0}), 0)]))
    after = _handler(contracts, c)
    after.assign(0, _latest(written))  # the crash: a new member restores partition 0
    assert sorted(after.joins[0].parked) == ["1@3", "2@3"]
    assert after.joins[0].clock_us == before.joins[0].clock_us
    out = after.process([event(contracts, "feature-log", vector(i, {"a": 2.0, "new": 3.0}), i) for i in (1, 2)])
    assert sorted(r["comparison_id"] for r in _records(out, "shadow-comparisons")) == ["1@3~7", "2@3~7"]


def test_a_challenger_removed_while_its_prediction_waits_is_not_scored(contracts: Contracts) -> None:
    c = challenger(["new"], [1.0])
    handler = _handler(contracts, c)
    handler.process([event(contracts, "predictions", prediction(1, OLD), 0)])
    handler.challengers.drop("fraud", "challenger")
    out = handler.process([event(contracts, "feature-log", vector(1, {"new": 1.0}), 0)])
    assert _records(out, "shadow-comparisons") == []


def test_other_models_and_challenger_roles_are_not_compared(contracts: Contracts) -> None:
    handler = _handler(contracts, challenger(["a"], [1.0], model="other"))
    shadowed = prediction(1, OLD) | {"role": "CHALLENGER"}
    out = handler.process(
        [event(contracts, "predictions", prediction(0, OLD), 0), event(contracts, "predictions", shadowed, 1)]
    )
    assert out.records == []


def test_rankers_compare_and_items_without_features_are_dead_lettered(contracts: Contracts) -> None:
    good = challenger(["USER_NB_EVENTS_1H"], [1.0], model="reco", kind="ranking", version="2")
    needy = challenger(["MISSING"], [1.0], model="reco", kind="ranking", version="3", alias="challenger-b")
    handler = _handler(contracts, good, needy)
    out = handler.process([event(contracts, "recommendations", sample("recommendation", 1), 0)])
    ranked = _records(out, "shadow-rankings")
    assert [r["comparison_id"] for r in ranked] == ["r-1@1~2"]
    dead = _records(out, "dead-letter")
    assert [d["error_type"] for d in dead] == [MISSING_ITEM_FEATURES] and "MISSING" in dead[0]["reason"]
