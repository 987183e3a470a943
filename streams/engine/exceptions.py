"""Errors of the online engine. Branch of :class:`slipstream.schemas.exceptions.SlipstreamError`::

EngineError
├── TopologyError   an unknown feature set or stage
└── StateError      state could not be restored or persisted
"""

from __future__ import annotations

from slipstream.schemas.exceptions import SlipstreamError


class EngineError(SlipstreamError):
    """Root of the online engine's errors."""


class TopologyError(EngineError):
    """An unknown feature set or stage."""


class StateError(EngineError):
    """State could not be restored from, or written to, its changelog."""
