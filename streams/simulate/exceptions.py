"""Errors of the data simulators. Branch of :class:`slipstream.streams.exceptions.StreamsError`::

    SimulationError                     a simulator cannot run as asked
    ├── SimulationConfigError           a FraudSimConfig / RecoSimConfig value is out of range (also a ValueError)
    └── SimulationInputError            a frame, array or time given to a simulator helper is wrong (also a ValueError)

Both leaves are also ``ValueError`` s, what the simulators raised before they had classes of their own: the
``slipstream simulate`` commands turn a ``ValueError`` from a config into a usage error (exit 2).
"""

from __future__ import annotations

from slipstream.streams.exceptions import StreamsError


class SimulationError(StreamsError):
    """Root of the simulators' errors."""


class SimulationConfigError(SimulationError, ValueError):
    """A simulator config field is out of its range or of the wrong type; the message names the field and value.

    Also a ``ValueError``: ``slipstream simulate fraud|reco`` catch that to report a bad option (exit 2)."""


class SimulationInputError(SimulationError, ValueError):
    """An argument of a simulator function is wrong: a transactions frame lacking columns, a naive time, user or item
    ids out of range or not integers, a sort key array that is not 1-d. The message quotes the bad value.

    Also a ``ValueError``, as these were before they had a class of their own."""
