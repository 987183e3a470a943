"""What a chaos run does and when: parsed from ``--chaos kill,join,broker`` and checked before anything starts.

Pure: no clients, no processes. The steps fire at fixed fractions of the first stage's progress (records consumed
over records published), spread evenly over the run, so every disruption lands mid-stream whatever the machine's
speed: with three steps at 25 %, 50 % and 75 %.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from slipstream.chaos.exceptions import ChaosError

Action = Literal["kill", "join", "broker"]
ACTIONS: tuple[Action, ...] = ("kill", "join", "broker")


@dataclass(frozen=True, slots=True)
class ChaosStep:
    action: Action
    at: float  # fraction of the first stage's input consumed when it fires, in (0, 1)


@dataclass(frozen=True, slots=True)
class ChaosPlan:
    steps: tuple[ChaosStep, ...]
    broker_down_s: float = 5.0

    @property
    def actions(self) -> tuple[Action, ...]:
        return tuple(step.action for step in self.steps)


def parse_chaos(value: str, *, workers: int, brokers: int | None, broker_down_s: float = 5.0) -> ChaosPlan:
    """``"kill,join,broker"`` -> a plan; a one-line :class:`ChaosError` naming the bad value otherwise.

    ``workers`` per stage; ``brokers`` in the Kafka cluster (None: not a platform Slipstream controls)."""
    names = [part.strip() for part in value.split(",") if part.strip()]
    if not names:
        msg = f"--chaos {value!r} names no action; choose from {', '.join(ACTIONS)}"
        raise ChaosError(msg)
    unknown = [name for name in names if name not in ACTIONS]
    if unknown:
        msg = f"--chaos: unknown action {unknown[0]!r}; choose from {', '.join(ACTIONS)}"
        raise ChaosError(msg)
    if len(set(names)) != len(names):
        msg = f"--chaos {value!r} names an action twice"
        raise ChaosError(msg)
    if "kill" in names and workers < 2:
        msg = f"--chaos kill needs --workers 2 or more (got {workers}): a killed only worker leaves no one to take over"
        raise ChaosError(msg)
    if "broker" in names and (brokers is None or brokers < 3):
        got = "a Kafka Slipstream does not run" if brokers is None else f"{brokers} broker(s)"
        msg = f"--chaos broker needs the local platform with 3 brokers (slipstream infra up --brokers 3); got {got}"
        raise ChaosError(msg)
    if not broker_down_s > 0:
        msg = f"broker down time must be > 0 seconds, got {broker_down_s!r}"
        raise ChaosError(msg)
    return ChaosPlan(_spread(names), broker_down_s)  # type: ignore[arg-type]  # checked against ACTIONS above


def _spread(names: Sequence[Action]) -> tuple[ChaosStep, ...]:
    count = len(names)
    return tuple(ChaosStep(name, round((i + 1) / (count + 1), 4)) for i, name in enumerate(names))


def due(plan: ChaosPlan, fired: int, consumed: int, expected: int) -> ChaosStep | None:
    """The next step to fire now (steps fire in order, one at a time), given the first stage's progress."""
    if fired >= len(plan.steps) or expected <= 0:
        return None
    step = plan.steps[fired]
    return step if consumed >= step.at * expected else None
