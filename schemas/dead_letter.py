"""Dead-letter envelopes: an event a processor could not use, kept whole with the reason.

Pure: the caller passes the clock reading, so envelopes are reproducible in replays and tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slipstream.schemas.exceptions import EnvelopeError


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A message as read off a topic, before decoding."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes | None]] = ()


def envelope(
    message: RawMessage, *, error_type: str, reason: str, processor: str, failed_at: datetime
) -> dict[str, Any]:
    """The ``dead_letter`` record for ``message``."""
    if failed_at.tzinfo is None:
        msg = f"failed_at must be timezone-aware, got {failed_at!r}"
        raise EnvelopeError(msg)
    headers = {name: value for name, value in message.headers if value is not None}
    return {
        "source_topic": message.topic,
        "source_partition": message.partition,
        "source_offset": message.offset,
        "source_timestamp": message.timestamp_ms,
        "original_key": message.key,
        "original_value": message.value,
        "original_headers": headers,
        "error_type": error_type,
        "reason": reason,
        "processor": processor,
        "failed_at": failed_at,
    }
