"""Errors of a chaos run::

ChaosError  a chaos plan cannot run (bad option, no broker to restart) or a disruption went wrong
"""

from __future__ import annotations

from slipstream.schemas.exceptions import SlipstreamError


class ChaosError(SlipstreamError):
    """A chaos plan that cannot run (bad option, no broker to restart), or a disruption that did not go as planned."""
