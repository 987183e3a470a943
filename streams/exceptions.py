"""Errors of the stream processors. Branch of :class:`slipstream.schemas.exceptions.SlipstreamError`::

    StreamsError                        (slipstream.streams.exceptions)
    ├── PublishError                    (slipstream.streams.exceptions)  a publish option is invalid (also a ValueError)
    ├── EngineError                     (slipstream.streams.engine.exceptions)  see there
    └── SimulationError                 (slipstream.streams.simulate.exceptions)  see there

A file of events that does not fit its topic's contract raises the schemas' ``SerializationError``, not one of these.
"""

from __future__ import annotations

from slipstream.schemas.exceptions import SlipstreamError


class StreamsError(SlipstreamError):
    """Root of the errors raised by ``streams`` (the engine, the simulators, the publisher)."""


class PublishError(StreamsError, ValueError):
    """An option of a publish run is invalid (a rate that is not > 0 events/s); the message quotes the value.

    Also a ``ValueError``, which :class:`~slipstream.streams.publish.Pacer` raised before it had a class of its own.
    """
