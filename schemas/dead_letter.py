"""Dead-letter envelopes: an event a processor could not use, kept whole with the reason.

Pure: the caller passes the clock reading, so envelopes are reproducible in replays and tests.

Where an envelope goes (:func:`dead_letter_topic`): to ``dead-letter``, unless the original carries the
:data:`REDRIVE_HEADER` — it was re-driven from a dead-letter topic and failed again — in which case it goes to
``dead-letter-quarantine`` with its new reason, and is never re-driven automatically again (``slipstream dead-letters
redrive`` re-drives a quarantined envelope only when asked ``--from-quarantine``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slipstream.schemas.exceptions import EnvelopeError

#: Logical topics of the envelopes: first failures, and failures of re-driven originals.
DEAD_LETTER_TOPIC = "dead-letter"
QUARANTINE_TOPIC = "dead-letter-quarantine"
#: The compacted log of every re-drive, keyed by the envelope's coordinate (what makes a re-drive happen once).
REDRIVE_LOG_TOPIC = "dead-letter-redrives"

#: Header of a re-driven original: ``<partition>:<offset>`` of its envelope.
REDRIVE_HEADER = "slipstream-redrive"
#: Header of a re-driven original: the logical topic its envelope was in.
REDRIVE_FROM_HEADER = "slipstream-redrive-from"
#: Header of a re-driven original: the id of the re-drive run that sent it.
REDRIVE_ID_HEADER = "slipstream-redrive-id"
REDRIVE_HEADERS = (REDRIVE_HEADER, REDRIVE_FROM_HEADER, REDRIVE_ID_HEADER)

#: The error types Slipstream's processors write (``error_type`` of the envelope), with who writes them.
ERROR_TYPES = {
    "undecodable": "not framed, or written with an unknown schema (typed consumers, the engine)",
    "schema_mismatch": "the body does not decode with its schema (typed consumers, the engine)",
    "invalid_field": "decodes, but a value is out of its domain (typed consumers, the engine, slipstream produce)",
    "late_event": "older than its partition's newest event by more than the allowed lateness (the engine)",
    "invalid_value": "the contract accepted it but the scorer cannot use it (the Kafka scorers)",
    "feature_vector_missing": "a prediction whose feature vector never came (the shadow consumer)",
    "item_features_missing": "a recommendation whose items lack a feature the challenger needs (the shadow consumer)",
}


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


def is_redriven(headers: Iterable[tuple[str, object]]) -> bool:
    """Whether a message with these headers is a re-driven original (it carries :data:`REDRIVE_HEADER`)."""
    return any(name == REDRIVE_HEADER for name, _ in headers)


def dead_letter_topic(message: RawMessage) -> str:
    """The logical topic ``message``'s envelope goes to: the quarantine for a re-driven original that failed again."""
    return QUARANTINE_TOPIC if is_redriven(message.headers) else DEAD_LETTER_TOPIC


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
