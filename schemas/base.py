"""Interfaces of the contract layer: how a schema'd body is framed on the wire, and how a record is checked."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from slipstream.schemas.registry import SchemaVersion


class Framing(Protocol):
    """Puts a schema reference in front of an Avro body, and finds the writer schema of framed bytes."""

    name: str

    def frame(self, topic: str, schema: SchemaVersion, body: bytes) -> bytes:
        """Return ``body`` prefixed with the reference to ``schema``."""
        ...

    def unframe(self, topic: str, data: bytes) -> tuple[SchemaVersion, memoryview]:
        """Return the writer schema and the Avro body; raise :class:`DecodeError` when not framed right."""
        ...


class RecordValidator(Protocol):
    """A semantic check beyond the schema (finite amounts, ids present, times in range)."""

    def __call__(self, record: Mapping[str, Any]) -> str | None:
        """Return ``None`` for a valid record, else the reason, quoting the bad value."""
        ...
