"""Errors of the model watchers. Branch of :class:`slipstream.schemas.exceptions.SlipstreamError`::

MonitoringError
├── ShadowError      the shadow consumer cannot go on (no champion stream, a challenger's inputs unavailable)
├── JoinError        the label joiner cannot go on (inputs not co-partitioned, state not restored)
└── ReportError      realised performance cannot be computed or drawn (no outcomes, bad window)
"""

from __future__ import annotations

from slipstream.schemas.exceptions import SlipstreamError


class MonitoringError(SlipstreamError):
    """Root of the model watchers' errors."""


class ShadowError(MonitoringError):
    """The shadow consumer cannot go on."""


class JoinError(MonitoringError):
    """The label joiner cannot go on."""


class ReportError(MonitoringError):
    """Realised performance cannot be computed or drawn."""
