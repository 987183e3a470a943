"""The chaos plan: parsed and checked before anything starts; steps fire in order at fractions of the progress."""

from __future__ import annotations

import pytest

from slipstream.chaos import ChaosError, ChaosStep, parse_chaos
from slipstream.chaos.plan import due


def test_three_actions_are_spread_over_the_run_in_the_order_given() -> None:
    plan = parse_chaos("kill, join,broker", workers=2, brokers=3)
    assert plan.steps == (ChaosStep("kill", 0.25), ChaosStep("join", 0.5), ChaosStep("broker", 0.75))
    assert parse_chaos("broker", workers=1, brokers=3).steps == (ChaosStep("broker", 0.5),)


@pytest.mark.parametrize(
    ("value", "workers", "brokers", "message"),
    [
        ("", 2, 3, "names no action"),
        ("kill,explode", 2, 3, "unknown action 'explode'"),
        ("kill,kill", 2, 3, "names an action twice"),
        ("kill", 1, 3, "needs --workers 2 or more (got 1)"),
        ("broker", 2, 1, "got 1 broker(s)"),
        ("broker", 2, None, "a Kafka Slipstream does not run"),
    ],
)
def test_a_plan_that_cannot_run_is_refused_in_one_line(
    value: str, workers: int, brokers: int | None, message: str
) -> None:
    with pytest.raises(ChaosError, match="--chaos") as caught:
        parse_chaos(value, workers=workers, brokers=brokers)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_steps_fire_one_at_a_time_once_their_fraction_is_consumed() -> None:
    plan = parse_chaos("kill,join,broker", workers=2, brokers=3)
    assert due(plan, 0, 249, 1000) is None
    assert due(plan, 0, 250, 1000) == ChaosStep("kill", 0.25)
    assert due(plan, 1, 999, 1000) == ChaosStep("join", 0.5)  # late progress still fires the next step only
    assert due(plan, 3, 1000, 1000) is None
    assert due(plan, 0, 10, 0) is None


def test_a_broker_down_time_must_be_positive() -> None:
    with pytest.raises(ChaosError, match="broker down time"):
        parse_chaos("broker", workers=2, brokers=3, broker_down_s=0)
