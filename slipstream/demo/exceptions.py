"""Errors of the demo. Branch of :class:`slipstream.schemas.exceptions.SlipstreamError`::

DemoError        the run cannot go on: a child process exited, the engine failed, the data has no live period

:class:`DemoStopped` is no error: it unwinds the start-up when the user stops the run (Ctrl-C) before it went live.
"""

from __future__ import annotations

from slipstream.schemas.exceptions import SlipstreamError


class DemoError(SlipstreamError):
    """The demo cannot go on; the message says which part failed and how."""


class DemoStopped(Exception):  # a signal to unwind, not an error
    """Stopped (Ctrl-C) before the live traffic started."""
