"""Errors of recording and replaying slices. Branch of :class:`slipstream.schemas.exceptions.SlipstreamError`::

ReplayError           record or replay cannot go on: the message names the slice, topic, time or version at fault
├── SliceFormatError  a slice file is not a slice, is damaged (a checksum differs) or is of an unknown format
├── ToleranceError    a diff tolerance that is not a finite number >= 0
└── ReplayMismatch    a replay ran, and its predictions differ from the recorded ones beyond the tolerance

:class:`ReplayStopped` is no error: it unwinds a replay the user stopped (Ctrl-C, SIGTERM); the platform is torn
down on the way out.
"""

from __future__ import annotations

from slipstream.schemas.exceptions import SlipstreamError


class ReplayError(SlipstreamError):
    """Recording or replaying cannot go on."""


class SliceFormatError(ReplayError):
    """Not a slice, a damaged one, or a format this release cannot read."""


class ToleranceError(ReplayError):
    """A tolerance of the diff that is not a finite number >= 0."""


class ReplayMismatch(ReplayError):
    """The replayed predictions differ from the recorded ones beyond the stated tolerance."""


class ReplayStopped(Exception):  # a signal to unwind, not an error
    """Stopped by the user."""
