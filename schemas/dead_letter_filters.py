"""Choosing dead letters, and what a re-drive of them sends: pure, no Kafka, no clock (the caller passes ``now``).

A :class:`Letter` is one ``DeadLetter`` envelope where it sits: its logical topic (``dead-letter`` or
``dead-letter-quarantine``) and its :class:`Coordinate` (``partition:offset``, the id a person types). A
:class:`LetterFilter` selects letters by reason, error type, processor, source topic, failure time and id.
:func:`plan_redrive` decides, given what the re-drive log already holds, which letters to send again; the log's
entries (:class:`RedriveEntry`) are compact JSON keyed by :attr:`Letter.log_key`; :func:`redrive_headers` builds the
headers of a re-sent original.
"""

from __future__ import annotations

import base64
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from slipstream.schemas.dead_letter import (
    ERROR_TYPES,
    QUARANTINE_TOPIC,
    REDRIVE_FROM_HEADER,
    REDRIVE_HEADER,
    REDRIVE_HEADERS,
    REDRIVE_ID_HEADER,
    is_redriven,
)
from slipstream.schemas.exceptions import DeadLetterError

_COORDINATE = re.compile(r"^\s*(\d{1,9}):(\d{1,19})\s*$")
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True, order=True)
class Coordinate:
    """Where an envelope sits in its dead-letter topic; written ``partition:offset``."""

    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.partition}:{self.offset}"


def parse_coordinate(text: str) -> Coordinate:
    """``"2:41"`` -> ``Coordinate(2, 41)``; anything else is a :class:`DeadLetterError` quoting it."""
    match = _COORDINATE.match(text)
    if match is None:
        msg = f"dead-letter id {text!r} is not partition:offset (e.g. 2:41)"
        raise DeadLetterError(msg)
    return Coordinate(int(match[1]), int(match[2]))


def parse_time(text: str, now: datetime, option: str = "time") -> datetime:
    """An ISO-8601 time with its timezone (``2026-03-01T12:00:00+00:00``, ``...Z``), or a time relative to ``now``:
    a number and a unit among s, m, h, d, w (``90s``, ``2h``, ``1.5d``) meaning that long before ``now``."""
    relative = _RELATIVE.match(text)
    if relative is not None:
        return now - timedelta(seconds=float(relative[1]) * _UNITS[relative[2]])
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        msg = f"{option}: {text!r} is neither an ISO-8601 time with a timezone nor relative like 2h, 30m, 7d"
        raise DeadLetterError(msg) from None
    if parsed.tzinfo is None:
        msg = f"{option}: {text!r} has no timezone; add one (e.g. {text.strip()}+00:00) or use a relative time like 2h"
        raise DeadLetterError(msg)
    return parsed


def check_error_types(values: Iterable[str]) -> frozenset[str]:
    """``values`` if every one is a known error type (:data:`~slipstream.schemas.dead_letter.ERROR_TYPES`)."""
    chosen = frozenset(values)
    unknown = sorted(chosen - set(ERROR_TYPES))
    if unknown:
        msg = f"--error-type: unknown {', '.join(repr(u) for u in unknown)}; known: {', '.join(ERROR_TYPES)}"
        raise DeadLetterError(msg)
    return chosen


def _micros(at: datetime) -> int:
    return (at - _EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Letter:
    """One decoded ``DeadLetter`` envelope, with the logical topic and coordinate it sits at."""

    topic: str
    coordinate: Coordinate
    record: Mapping[str, Any]

    @property
    def id(self) -> str:
        return str(self.coordinate)

    @property
    def error_type(self) -> str:
        return str(self.record["error_type"])

    @property
    def reason(self) -> str:
        return str(self.record["reason"])

    @property
    def processor(self) -> str:
        return str(self.record["processor"])

    @property
    def source_topic(self) -> str:
        return str(self.record["source_topic"])

    @property
    def failed_at(self) -> datetime:
        at = self.record["failed_at"]
        return at if isinstance(at, datetime) else _EPOCH + timedelta(microseconds=int(at))

    @property
    def source(self) -> str:
        """``topic:partition:offset`` of the original."""
        r = self.record
        return f"{r['source_topic']}:{r['source_partition']}:{r['source_offset']}"

    @property
    def source_timestamp_ms(self) -> int | None:
        """The original's Kafka timestamp, epoch milliseconds (``None`` when it had none)."""
        at = self.record.get("source_timestamp")
        if at is None:
            return None
        return _micros(at) // 1000 if isinstance(at, datetime) else int(at)

    @property
    def headers(self) -> dict[str, bytes]:
        return dict(self.record.get("original_headers") or {})

    @property
    def quarantined(self) -> bool:
        """In the quarantine, or (written by a processor that does not route there) an original re-driven before."""
        return self.topic == QUARANTINE_TOPIC or is_redriven(self.headers.items())

    @property
    def log_key(self) -> str:
        """This envelope's key in the re-drive log: ``<logical topic>:<partition>:<offset>``."""
        return f"{self.topic}:{self.coordinate}"

    @property
    def identity(self) -> str:
        """What the envelope is about, to tell it from another at the same coordinate (a topic deleted and made
        again restarts its offsets): the original's coordinate and the failure time in microseconds."""
        return f"{self.source}@{_micros(self.failed_at)}"


@dataclass(frozen=True, slots=True)
class LetterFilter:
    """Which letters to take; an empty field takes every letter. ``reason`` is a case-insensitive substring,
    ``reason_pattern`` a regular expression searched in the reason; ``source_topics`` are full topic names."""

    reason: str | None = None
    reason_pattern: re.Pattern[str] | None = None
    error_types: frozenset[str] = frozenset()
    processors: frozenset[str] = frozenset()
    source_topics: frozenset[str] = frozenset()
    since: datetime | None = None
    until: datetime | None = None
    ids: frozenset[Coordinate] = frozenset()

    def matches(self, letter: Letter) -> bool:
        if self.ids and letter.coordinate not in self.ids:
            return False
        if self.error_types and letter.error_type not in self.error_types:
            return False
        if self.processors and letter.processor not in self.processors:
            return False
        if self.source_topics and letter.source_topic not in self.source_topics:
            return False
        if self.since is not None and letter.failed_at < self.since:
            return False
        if self.until is not None and letter.failed_at > self.until:
            return False
        if self.reason is not None and self.reason.casefold() not in letter.reason.casefold():
            return False
        return self.reason_pattern is None or self.reason_pattern.search(letter.reason) is not None


def make_filter(
    *,
    now: datetime,
    reason: str | None = None,
    reason_regex: str | None = None,
    error_types: Iterable[str] = (),
    processors: Iterable[str] = (),
    source_topics: Iterable[str] = (),
    since: str | None = None,
    until: str | None = None,
    ids: Iterable[str] = (),
) -> LetterFilter:
    """A :class:`LetterFilter` from text as a person types it; the first bad value raises :class:`DeadLetterError`
    naming it. ``source_topics`` must already be full names (the caller knows the namespace)."""
    pattern = None
    if reason_regex is not None:
        try:
            pattern = re.compile(reason_regex)
        except re.error as exc:
            msg = f"--reason-regex: {reason_regex!r} is not a regular expression: {exc}"
            raise DeadLetterError(msg) from None
    start = parse_time(since, now, "--since") if since is not None else None
    end = parse_time(until, now, "--until") if until is not None else None
    if start is not None and end is not None and start > end:
        msg = f"--since {since!r} ({start.isoformat()}) is after --until {until!r} ({end.isoformat()})"
        raise DeadLetterError(msg)
    return LetterFilter(
        reason=reason,
        reason_pattern=pattern,
        error_types=check_error_types(error_types),
        processors=frozenset(processors),
        source_topics=frozenset(source_topics),
        since=start,
        until=end,
        ids=frozenset(parse_coordinate(i) for i in ids),
    )


@dataclass(frozen=True, slots=True)
class Counts:
    """How many letters there are by error type and by processor."""

    total: int
    by_error_type: Mapping[str, int]
    by_processor: Mapping[str, int]


def count(letters: Iterable[Letter]) -> Counts:
    by_type: Counter[str] = Counter()
    by_processor: Counter[str] = Counter()
    for letter in letters:
        by_type[letter.error_type] += 1
        by_processor[letter.processor] += 1
    return Counts(sum(by_type.values()), _most_first(by_type), _most_first(by_processor))


def _most_first(counter: Counter[str]) -> dict[str, int]:
    """Largest count first, ties by name (a stable order for tables and JSON)."""
    return dict(sorted(counter.items(), key=lambda item: (-item[1], item[0])))


# ---------------------------------------------------------------------------------------------------- re-drives


@dataclass(frozen=True, slots=True)
class RedriveEntry:
    """A re-drive, as the compacted log keeps it under :attr:`Letter.log_key`."""

    identity: str
    redrive_id: str
    redriven_at: datetime
    target: str

    def encode(self) -> bytes:
        record = {
            "identity": self.identity,
            "redrive_id": self.redrive_id,
            "redriven_at": self.redriven_at.isoformat(),
            "target": self.target,
        }
        return json.dumps(record, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> RedriveEntry:
        try:
            raw = json.loads(data)
            return cls(
                str(raw["identity"]),
                str(raw["redrive_id"]),
                datetime.fromisoformat(raw["redriven_at"]),
                str(raw["target"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            msg = f"re-drive log entry {bytes(data[:80])!r} is not a re-drive record: {exc!r}"
            raise DeadLetterError(msg) from exc


@dataclass(frozen=True, slots=True)
class RedrivePlan:
    """What a re-drive does: ``chosen`` letters are sent again; ``already`` were re-driven before (the log says so);
    ``refused`` are quarantined and the re-drive was not asked ``from_quarantine``; ``over_limit`` were left for a
    later run by ``limit``."""

    chosen: list[Letter] = field(default_factory=list)
    already: list[Letter] = field(default_factory=list)
    refused: list[Letter] = field(default_factory=list)
    over_limit: list[Letter] = field(default_factory=list)


def plan_redrive(
    letters: Iterable[Letter],
    done: Mapping[str, RedriveEntry],
    *,
    from_quarantine: bool = False,
    limit: int | None = None,
) -> RedrivePlan:
    """Which of ``letters`` (already filtered) to send again, oldest failure first: never one whose log key is in
    ``done`` with the same identity, never a quarantined one unless ``from_quarantine``, at most ``limit``."""
    plan = RedrivePlan()
    for letter in sorted(letters, key=lambda x: (x.failed_at, x.coordinate)):
        entry = done.get(letter.log_key)
        if entry is not None and entry.identity == letter.identity:
            plan.already.append(letter)
        elif letter.quarantined and not from_quarantine:
            plan.refused.append(letter)
        elif limit is not None and len(plan.chosen) >= limit:
            plan.over_limit.append(letter)
        else:
            plan.chosen.append(letter)
    return plan


def redrive_id(now: datetime, token: str) -> str:
    """An id for one re-drive run: its UTC start time and a caller-chosen token (``rd-20260301T120000Z-1a2b3c4d``)."""
    return f"rd-{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{token}"


def redrive_headers(letter: Letter, run_id: str) -> list[tuple[str, bytes]]:
    """The original's headers, without the marks of an earlier re-drive, plus the marks of this one: the envelope's
    ``partition:offset`` (:data:`REDRIVE_HEADER`), its logical topic and the run's id."""
    kept = [(name, value) for name, value in sorted(letter.headers.items()) if name not in REDRIVE_HEADERS]
    return [
        *kept,
        (REDRIVE_HEADER, letter.id.encode()),
        (REDRIVE_FROM_HEADER, letter.topic.encode()),
        (REDRIVE_ID_HEADER, run_id.encode()),
    ]


# ---------------------------------------------------------------------------------------------------- rendering


def hexdump(data: bytes, limit: int = 64, width: int = 16) -> str:
    """The first ``limit`` bytes as offset, hex and printable ASCII, ``width`` a line."""
    lines = []
    for start in range(0, min(len(data), limit), width):
        chunk = data[start : min(start + width, limit)]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{start:08x}  {chunk.hex(' '):<{width * 3 - 1}}  {text}")
    if len(data) > limit:
        lines.append(f"... {len(data) - limit} more bytes ({len(data)} in all)")
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(value).decode()}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_jsonable(v) for v in value]
    return value


def letter_json(letter: Letter) -> dict[str, Any]:
    """A letter as JSON-ready data: its topic and id, then the envelope (``original_value`` always in base64, other
    bytes as text when they are UTF-8; ``source_timestamp`` in epoch milliseconds, ``failed_at`` in ISO-8601)."""
    record = dict(letter.record)
    value = record.pop("original_value", None)
    body = {str(k): _jsonable(v) for k, v in record.items()}
    body["original_value_base64"] = base64.b64encode(value).decode() if value is not None else None
    body["failed_at"] = letter.failed_at.isoformat()
    return {"topic": letter.topic, "id": letter.id, "quarantined": letter.quarantined, **body}
