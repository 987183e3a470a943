"""The shadow consumer: every challenger scores the champion's exact inputs, live (``slipstream shadow``)."""

from slipstream.monitoring.shadow.challengers import Challenger, ChallengerSet
from slipstream.monitoring.shadow.consumer import JoinBound, ShadowHandler
from slipstream.monitoring.shadow.service import ShadowSettings, ShadowWorker

__all__ = ["Challenger", "ChallengerSet", "JoinBound", "ShadowHandler", "ShadowSettings", "ShadowWorker"]
