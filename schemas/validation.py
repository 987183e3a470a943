"""Semantic checks that a schema cannot express: ids present and non-negative, amounts finite, times in range.

Each check returns ``None`` for a valid record or a reason that quotes the bad value. Pure functions: the
online engine, the scorer and replays all reject exactly the same events.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

EARLIEST_EVENT_TIME = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_EVENT_TIME = datetime(2100, 1, 1, tzinfo=UTC)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_EARLIEST_US = (EARLIEST_EVENT_TIME - _EPOCH) // _US
_LATEST_US = (LATEST_EVENT_TIME - _EPOCH) // _US

Check = Callable[[Mapping[str, Any]], str | None]


def non_negative_id(field: str) -> Check:
    def check(record: Mapping[str, Any]) -> str | None:
        value = record.get(field)
        if value is None:
            return f"missing id {field!r}"
        if not isinstance(value, int) or value < 0:
            return f"{field} must be a non-negative integer, got {value!r}"
        return None

    return check


def non_empty_text(field: str) -> Check:
    def check(record: Mapping[str, Any]) -> str | None:
        value = record.get(field)
        if not isinstance(value, str) or not value.strip():
            return f"{field} must be non-empty text, got {value!r}"
        return None

    return check


def finite_non_negative(field: str) -> Check:
    def check(record: Mapping[str, Any]) -> str | None:
        value = record.get(field)
        if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            return f"{field} must be a finite number >= 0, got {value!r}"
        return None

    return check


def finite(field: str) -> Check:
    def check(record: Mapping[str, Any]) -> str | None:
        value = record.get(field)
        if not isinstance(value, int | float) or not math.isfinite(value):
            return f"{field} must be a finite number, got {value!r}"
        return None

    return check


def event_time_in_range(field: str = "event_time") -> Check:
    def check(record: Mapping[str, Any]) -> str | None:
        value = record.get(field)
        if isinstance(value, int) and not isinstance(value, bool):  # epoch microseconds, as on the wire
            if _EARLIEST_US <= value < _LATEST_US:
                return None
            return (
                f"{field} {value} (epoch microseconds) is out of range "
                f"[{EARLIEST_EVENT_TIME.date()}, {LATEST_EVENT_TIME.date()})"
            )
        if not isinstance(value, datetime) or value.tzinfo is None:
            return f"{field} must be a timezone-aware timestamp, got {value!r}"
        if not EARLIEST_EVENT_TIME <= value < LATEST_EVENT_TIME:
            return (
                f"{field} {value.isoformat()} is out of range "
                f"[{EARLIEST_EVENT_TIME.date()}, {LATEST_EVENT_TIME.date()})"
            )
        return None

    return check


class Validator:
    """All checks of one contract, run in order; the first failure is the reason."""

    def __init__(self, *checks: Check) -> None:
        self._checks = checks

    def __call__(self, record: Mapping[str, Any]) -> str | None:
        for check in self._checks:
            reason = check(record)
            if reason is not None:
                return reason
        return None


VALIDATORS: Mapping[str, Validator] = {
    "transaction": Validator(
        non_negative_id("transaction_id"),
        non_negative_id("customer_id"),
        non_negative_id("terminal_id"),
        finite_non_negative("amount"),
        event_time_in_range("event_time"),
    ),
    "label": Validator(
        non_negative_id("transaction_id"),
        non_negative_id("customer_id"),
        non_negative_id("terminal_id"),
        event_time_in_range("tx_event_time"),
        event_time_in_range("event_time"),
    ),
    "interaction": Validator(
        non_empty_text("event_id"),
        non_negative_id("user_id"),
        non_negative_id("item_id"),
        event_time_in_range("event_time"),
    ),
    "prediction": Validator(non_empty_text("prediction_id"), finite("score"), event_time_in_range("event_time")),
    "recommendation": Validator(non_empty_text("request_id"), non_negative_id("user_id")),
    "model_event": Validator(non_empty_text("model_name"), non_empty_text("version")),
    "drift_alarm": Validator(non_empty_text("alarm_id"), non_empty_text("model_name"), finite("value")),
}


def validator_for(schema_name: str) -> Validator | None:
    return VALIDATORS.get(schema_name)
