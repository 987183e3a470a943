"""What a slice must hold (from the feature definitions) and times on the command line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from slipstream.features.definitions import feature_sets
from slipstream.features.definitions.fraud import FRAUD
from slipstream.replay.exceptions import ReplayError
from slipstream.replay.scope import scope_for
from slipstream.replay.serving_timeline import champion_at, serving_timeline
from slipstream.replay.when import parse_when

DAY_US = 86_400_000_000


def test_a_trigger_brings_its_sources_and_their_reach() -> None:
    scope = scope_for(["transactions"], feature_sets(), lateness_s=2.0)
    assert scope.topics == ("transactions", "labels")
    assert scope.added == ("labels",)
    assert "fraud" in scope.sets
    labels = scope.rule("labels")
    tx = scope.rule("transactions")
    assert labels is not None and tx is not None
    assert labels.time_field == "tx_event_time"
    longest = max(v.reach_us for v in FRAUD.views)
    assert longest == 37 * DAY_US  # the terminal's 30-day risk window, 7 days delayed
    assert tx.reach_us == longest + 2_000_000
    assert [o.topic for o in scope.outputs] == ["predictions"]


def test_topics_no_set_reads_need_no_history() -> None:
    scope = scope_for(["recommendation-requests"], feature_sets(), lateness_s=2.0)
    assert scope.history == () and scope.added == () and scope.outputs == ()


NOW = datetime(2026, 12, 3, 14, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("-5m", NOW - timedelta(minutes=5)),
        ("90s", NOW - timedelta(seconds=90)),
        ("2h ago", NOW - timedelta(hours=2)),
        ("2026-12-03T13:00:00+00:00", NOW - timedelta(hours=1)),
        ("2026-12-03T13:00:00Z", NOW - timedelta(hours=1)),
    ],
)
def test_times(text: str, expected: datetime) -> None:
    assert parse_when(text, "--from", NOW) == expected


@pytest.mark.parametrize(("text", "why"), [("2026-12-03T13:00:00", "no time zone"), ("yesterday", "is not a time")])
def test_bad_times_name_the_option_and_value(text: str, why: str) -> None:
    with pytest.raises(ReplayError, match=f"--to: '{text}'.*{why}"):
        parse_when(text, "--to", NOW)


def test_the_champion_timeline_follows_promotions_and_rollbacks() -> None:
    events = [
        {"action": "REGISTERED", "alias": None, "model_name": "fraud", "version": "1", "_timestamp_ms": 1},
        {"action": "PROMOTED", "alias": "champion", "model_name": "fraud", "version": "1", "_timestamp_ms": 2},
        {"action": "CHALLENGER_SET", "alias": "challenger", "model_name": "fraud", "version": "2", "_timestamp_ms": 3},
        {"action": "PROMOTED", "alias": "champion", "model_name": "fraud", "version": "2", "_timestamp_ms": 5},
        {"action": "ROLLED_BACK", "alias": "champion", "model_name": "fraud", "version": "1", "_timestamp_ms": 9},
    ]
    timeline = serving_timeline(events)
    assert [c["version"] for c in timeline["fraud"]] == ["1", "2", "1"]
    assert champion_at(timeline, "fraud", 1) is None
    assert champion_at(timeline, "fraud", 6) == "2"
    assert champion_at(timeline, "fraud", 9) == "1"
