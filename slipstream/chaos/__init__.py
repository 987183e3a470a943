"""Chaos runs: the feature engine's workers killed, joined and a Kafka broker restarted mid-stream, on a plan fixed
before the run (``slipstream features verify --chaos``)."""

from __future__ import annotations

from collections.abc import Sequence

from slipstream.chaos.exceptions import ChaosError
from slipstream.chaos.plan import ACTIONS, ChaosPlan, ChaosStep, parse_chaos
from slipstream.chaos.supervisor import BrokerControl, ChaosReport, ChaosRun

__all__: Sequence[str] = (
    "ACTIONS",
    "BrokerControl",
    "ChaosError",
    "ChaosPlan",
    "ChaosReport",
    "ChaosRun",
    "ChaosStep",
    "parse_chaos",
)
