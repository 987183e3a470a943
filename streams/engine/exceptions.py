"""Errors of the online engine. Branch of :class:`slipstream.streams.exceptions.StreamsError`::

EngineError                         the engine failed (a stage process exited with an error)
├── TopologyError                   an unknown feature set or stage, or one the engine cannot host
├── StateError                      state could not be restored or persisted
├── LagError                        a consumer group's committed offsets or its inputs' ends could not be read
└── InternalMessageError            a message on an engine-internal topic is not a JSON object (also a ValueError)
"""

from __future__ import annotations

from slipstream.streams.exceptions import StreamsError


class EngineError(StreamsError):
    """Root of the online engine's errors."""


class TopologyError(EngineError):
    """An unknown feature set or stage, or a feature set the engine cannot host (no views, an undeclared topic,
    a topic keyed by another entity than its stage's)."""


class StateError(EngineError):
    """State could not be restored from, or written to, its changelog."""


class LagError(EngineError):
    """A consumer group's committed offsets, or the ends of its input partitions, could not be read (a broker
    restarting, a topic not created yet)."""


class InternalMessageError(EngineError, ValueError):
    """A message on a topic only the engine writes (forwards between stages, watermark markers) is not a JSON object.

    Also a ``ValueError``, as :func:`~slipstream.streams.engine.processor.decode_internal` raised (its own, or
    orjson's ``JSONDecodeError``) before this class existed.
    """
