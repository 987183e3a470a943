"""Times on the command line: ISO 8601 with a time zone, ``now``, or a duration before now (``-5m``, ``90s``)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from slipstream.replay.exceptions import ReplayError

_RELATIVE = re.compile(r"^-?(?P<n>\d+(?:\.\d+)?)(?P<unit>s|m|h|d)(?: ago)?$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_when(text: str, option: str, now: datetime) -> datetime:
    """``2026-12-03T14:00:00+00:00``, ``now``, ``-5m`` / ``5m`` / ``5m ago`` (before ``now``); a naive time is
    refused (event and Kafka times are UTC instants)."""
    value = text.strip()
    if value == "now":
        return now
    match = _RELATIVE.match(value)
    if match:
        return now - timedelta(**{_UNITS[match["unit"]]: float(match["n"])})
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        msg = f"{option}: {text!r} is not a time (ISO 8601 with a zone, 'now', or a duration before now like '-5m')"
        raise ReplayError(msg) from exc
    if parsed.tzinfo is None:
        msg = f"{option}: {text!r} has no time zone (add +00:00 or Z)"
        raise ReplayError(msg)
    return parsed
