"""Errors of a drill. Branch of :class:`slipstream.schemas.exceptions.SlipstreamError`::

DrillError       the drill cannot start or go on: bad input, a process that died, a pipeline that did not drain

:class:`DrillStopped` is no error: it unwinds a drill the user stopped (Ctrl-C).
"""

from __future__ import annotations

from slipstream.schemas.exceptions import SlipstreamError


class DrillError(SlipstreamError):
    """The drill cannot go on; the message says which part failed and how."""


class DrillStopped(Exception):  # a signal to unwind, not an error
    """Stopped (Ctrl-C)."""
