"""Option values checked before a command does any work: one line naming the option and the bad value
(:class:`~slipstream.exceptions.InputError`, exit 2; see :mod:`slipstream.cli.inputs` for files)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import TypeVar

from slipstream.exceptions import InputError

__all__ = ["check_choice", "check_choices", "check_date", "check_number"]

N = TypeVar("N", int, float)


def check_choice(value: str, choices: Iterable[str], option: str) -> str:
    known = list(choices)
    if value not in known:
        msg = f"{option}: {value!r} is not one of {', '.join(known)}"
        raise InputError(msg)
    return value


def check_choices(text: str, choices: Iterable[str], option: str) -> tuple[str, ...]:
    """A comma-separated subset of ``choices``, at least one."""
    known = list(choices)
    chosen = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [p for p in chosen if p not in known]
    if unknown or not chosen:
        what = f"unknown {', '.join(repr(u) for u in unknown)}" if unknown else "nothing chosen"
        msg = f"{option}: {what} in {text!r}; choose from {','.join(known)}"
        raise InputError(msg)
    return chosen


def check_number(value: N, option: str, *, gt: float | None = None, ge: float | None = None) -> N:
    """``value`` if it is > ``gt`` and >= ``ge`` (NaN never is)."""
    if (gt is not None and not value > gt) or (ge is not None and not value >= ge):
        bound = f"> {gt:g}" if gt is not None else f">= {ge:g}"
        msg = f"{option}: must be {bound}, got {value!r}"
        raise InputError(msg)
    return value


def check_date(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        msg = f"{option}: {text!r} is not an ISO date (YYYY-MM-DD)"
        raise InputError(msg) from exc
