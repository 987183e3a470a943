"""The bounded feature join alone: span and entry bounds, supersession, the clock, the changelog round trip."""

from __future__ import annotations

from typing import Any

import pytest

from slipstream.monitoring.exceptions import ShadowError
from slipstream.monitoring.shadow.feature_join import CLOCK_KEY, FeatureJoin, Parked

S = 1_000_000


def _parked(pid: str, event_id: str, at_us: int) -> Parked:
    record = {"prediction_id": pid, "event_id": event_id}
    return Parked(record, pid.encode(), (("challenger", "7"),), "fraud", at_us, "t", 0, 1, None, b"k")


def _decode(raw: bytes) -> dict[str, Any]:
    pid = raw.decode()
    return {"prediction_id": pid, "event_id": pid.split("@")[0]}


def test_vectors_live_for_the_span_then_go() -> None:
    join = FeatureJoin(100, 10 * S, _decode)
    join.on_vector("fraud", "1", 0, {"a": 1.0})
    assert join.lookup("fraud", "1", 5 * S) == {"a": 1.0}
    assert join.expire() == [] and len(join) == 1
    join.on_vector("fraud", "2", 11 * S, {"a": 2.0})
    assert join.expire() == []  # a vector going is counted, not returned
    assert join.lookup("fraud", "1", 11 * S) is None and join.counts.vectors_dropped == 1
    join.on_vector("fraud", "old", 0, {"a": 3.0})  # already out of the span
    assert join.lookup("fraud", "old", 11 * S) is None and join.counts.vectors_dropped == 2


def test_a_later_vector_supersedes_and_serves_several_predictions() -> None:
    join = FeatureJoin(100, 10 * S, _decode)
    join.park(_parked("1@3", "1", 0))
    join.park(_parked("1@4", "1", 0))
    done = join.on_vector("fraud", "1", 0, {"a": 1.0})
    assert [p.prediction_id for p in done] == ["1@3", "1@4"]
    join.on_vector("fraud", "1", 0, {"a": 9.0})
    assert join.lookup("fraud", "1", 0) == {"a": 9.0}
    assert join.on_vector("other-set", "1", 0, {"a": 1.0}) == []  # another feature set's event 1


def test_parked_predictions_expire_never_silently() -> None:
    join = FeatureJoin(2, 10 * S, _decode)
    for i in range(3):
        join.park(_parked(f"{i}@3", str(i), i * S))
    assert [p.prediction_id for p in join.expire()] == ["0@3"]  # over the entry bound: the oldest
    join.on_vector("fraud", "x", 11 * S + S // 2, {})
    assert [p.prediction_id for p in join.expire()] == ["1@3"]  # out of the span (2 s is still within it)
    assert join.counts.expired == 2 and list(join.parked) == ["2@3"]


def test_changelog_round_trip() -> None:
    join = FeatureJoin(100, 10 * S, _decode)
    join.on_vector("fraud", "1", 3 * S, {"a": 1.0})
    join.park(_parked("2@3", "2", 4 * S))
    state = {k: v for k, v in join.changes() if v is not None}
    assert state[CLOCK_KEY] == str(4 * S).encode()
    again = FeatureJoin(100, 10 * S, _decode)
    again.restore(state)
    assert again.clock_us == 4 * S and again.lookup("fraud", "1", 0) == {"a": 1.0}
    assert [p.prediction_id for p in again.on_vector("fraud", "2", 4 * S, {})] == ["2@3"]
    restored = join.parked["2@3"]
    assert (restored.key, restored.offset, restored.waiting) == (b"k", 1, (("challenger", "7"),))


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ShadowError, match="max_entries"):
        FeatureJoin(0, 1, _decode)
