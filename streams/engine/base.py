"""What a stage's I/O protocol needs from a runtime: the messages it reads and where its outputs go.

Two runtimes host the same stages: :mod:`.runner` (confluent-kafka's consumer group) and :mod:`.faust_runtime` (a
Faust app's agents). Both hand :class:`~slipstream.streams.engine.stage_io.StageIO` messages shaped like
:class:`InputMessage` and give it a :class:`StageOutputs`; everything between (decode, dead letters, outputs, the
flush before a commit, how far a commit may go) is written once, in :mod:`.stage_io`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from slipstream.schemas.dead_letter import RawMessage


class InputMessage(Protocol):
    """A consumed record, as confluent-kafka's ``Message`` presents it (Faust's are adapted to it)."""

    def topic(self) -> str | None: ...

    def partition(self) -> int | None: ...

    def offset(self) -> int | None: ...

    def key(self) -> bytes | None: ...

    def value(self) -> bytes | None: ...

    def headers(self) -> Any: ...

    def timestamp(self) -> tuple[int, int]: ...


class StageOutputs(Protocol):
    """Where a stage's outputs go: Kafka records and dead letters, sent now, acknowledged by :meth:`flush`."""

    def forward(self, topic: str, key: bytes, value: bytes, partition: int | None = None) -> None:
        """To the next stage: repartitioned events (by key) and markers (to an explicit partition)."""

    def changelog(self, topic: str, key: bytes, value: bytes | None, partition: int) -> None:
        """A state change (``None``: a tombstone) to the stage's compacted changelog."""

    def event(self, topic: str, record: Mapping[str, Any]) -> None:
        """A record under its contract (the feature log)."""

    def dead_letter(self, message: RawMessage, *, error_type: str, reason: str, processor: str) -> None: ...

    def poll(self) -> None:
        """Serve delivery reports without waiting."""

    def flush(self, timeout_s: float) -> None:
        """Every output sent so far is acknowledged by the broker; raises
        :class:`~slipstream.streams.engine.exceptions.StateError` otherwise (before any offset is committed)."""

    def close(self, *, discard: bool) -> None:
        """Release the producers; ``discard``: drop what is unsent (after a failure it is read again on restart)."""


__all__ = ["InputMessage", "StageOutputs"]
