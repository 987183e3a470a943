"""The closed loop's policy: one declarative TOML file, read once, validated, frozen.

:func:`load_policy` reads a file (``None``: the shipped ``default_policy.toml``) with :mod:`tomllib` and validates it
with pydantic (unknown keys refused, values typed strictly: ``7`` is not ``7.0`` for an integer, ``"7"`` is nothing).
Every problem is one line naming the file, the dotted key and the bad value::

    policy.toml: promotion.shadow.min_labels must be an integer >= 1, got 0
    policy.toml: unknown key triggers.drfit (did you mean drift?)

All problems of a file are reported together, one a line, in one :class:`~slipstream.monitoring.exceptions.
MonitoringError`. The keys, their defaults and why are in ``docs/policy.md``.
"""

from __future__ import annotations

import difflib
import tomllib
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from slipstream.monitoring.exceptions import MonitoringError

__all__ = ["DEFAULT_POLICY", "DriftKind", "Metric", "Policy", "load_policy", "parse_policy"]

DEFAULT_POLICY: Final = "default_policy.toml"
Metric = Literal["average_precision", "card_precision_at_100"]
DriftKind = Literal["FEATURE_DRIFT", "SCORE_DRIFT", "ERROR_RATE", "FLIP_RATE"]

Days = Annotated[float, Field(gt=0, allow_inf_nan=False)]
DaysOrOff = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=1)]
Margin = Annotated[float, Field(ge=-1, le=1, allow_inf_nan=False)]
Rate = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
ParamValue = int | float | str | bool


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ModelSection(_Section):
    name: Annotated[str, Field(min_length=1)] = "fraud"


class DriftTrigger(_Section):
    kinds: Annotated[tuple[DriftKind, ...], Field(strict=False)] = ("FEATURE_DRIFT", "SCORE_DRIFT", "ERROR_RATE")
    min_alarms: Count = 2
    alarm_window_days: Days = 3.0


class PerformanceTrigger(_Section):
    enabled: bool = True
    window_days: Days = 7.0
    min_labels: Count = 10_000
    min_positives: Count = 50
    metric: Metric = "average_precision"
    margin: Rate = 0.10


class Triggers(_Section):
    drift: DriftTrigger = DriftTrigger()
    performance: PerformanceTrigger = PerformanceTrigger()
    schedule_days: DaysOrOff = 0.0
    cooldown_days: DaysOrOff = 1.0


class Retrain(_Section):
    window_days: Days = 21.0  # training: the window_days before the holdout
    label_maturity_days: DaysOrOff = 7.0
    valid_days: Days = 2.0
    refit: bool = True  # once the offline gate passed: fit again on training + holdout, as many rounds
    rounds: Count | None = None
    params: dict[str, ParamValue] = Field(default_factory=dict)


class OfflineGate(_Section):
    metric: Metric = "average_precision"
    margin: Margin = 0.01


class ShadowGate(_Section):
    min_labels: Count = 10_000
    min_positives: Count = 80
    metric: Metric = "average_precision"
    margin: Margin = 0.0
    max_flip_rate: Rate = 0.05
    max_latency_p99_us: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 2_000.0
    max_days: Days = 21.0


class Promotion(_Section):
    offline: OfflineGate = OfflineGate()
    shadow: ShadowGate = ShadowGate()


class Rollback(_Section):
    min_labels: Count = 20_000
    min_positives: Count = 100
    metric: Metric = "average_precision"
    margin: Rate = 0.05
    max_days: Days = 21.0


class Policy(_Section):
    """The whole policy (see ``docs/policy.md``); frozen, so one object is read once and shared."""

    model: ModelSection = ModelSection()
    triggers: Triggers = Triggers()
    retrain: Retrain = Retrain()
    promotion: Promotion = Promotion()
    rollback: Rollback = Rollback()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (lists for tuples), as decisions carry it in their evidence."""
        return self.model_dump(mode="json")

    @property
    def retention_days(self) -> float:
        """Event time a loop state keeps labelled scores for: the longest look-back any trigger or gate needs."""
        return max(self.triggers.performance.window_days, self.promotion.shadow.max_days, self.rollback.max_days)


def load_policy(path: str | Path | None = None) -> Policy:
    """Read and validate a policy file; ``None`` reads the shipped default. :class:`MonitoringError` names the file
    and every bad key, one a line."""
    if path is None:
        text = resources.files(__package__ or "slipstream.monitoring.loop").joinpath(DEFAULT_POLICY).read_text()
        return parse_policy(text, DEFAULT_POLICY)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"{path}: cannot read the policy: {exc}"
        raise MonitoringError(msg) from exc
    return parse_policy(text, str(path))


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Validate TOML ``text``; ``source`` names it in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = f"{source}: not valid TOML: {exc}"
        raise MonitoringError(msg) from exc
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        lines = _messages(exc, source)
        raise MonitoringError("\n".join(lines)) from exc


# ---------------------------------------------------------------------------------------------- error messages
_UNION_TAGS: Final = {"int", "float", "str", "bool"}


def _messages(exc: ValidationError, source: str) -> list[str]:
    lines: list[str] = []
    for error in exc.errors():
        loc = list(error["loc"])
        if len(loc) > 1 and loc[-1] in _UNION_TAGS and _field_at(loc[:-1]) is _PARAM:
            loc = loc[:-1]  # one line per value of a union, not one per member tried
        key = _dotted(loc)
        if error["type"] == "extra_forbidden":
            line = f"{source}: unknown key {key}{_suggest(loc)}"
        else:
            line = f"{source}: {key} must be {_describe(_field_at(loc))}, got {error['input']!r}"
        if line not in lines:
            lines.append(line)
    return lines


def _dotted(loc: list[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_PARAM: Final = object()  # the description of a value of retrain.params


def _field_at(loc: list[int | str]) -> Any:
    """The annotation-with-metadata at ``loc``: a (type, metadata) pair, a model class, or :data:`_PARAM`."""
    model: Any = Policy
    described: Any = Policy
    for i, part in enumerate(loc):
        if isinstance(model, type) and issubclass(model, BaseModel) and isinstance(part, str):
            field = model.model_fields.get(part)
            if field is None:
                return None
            described = (field.annotation, field.metadata)
            model = field.annotation
        elif (origin := typing.get_origin(model)) is tuple:
            item = typing.get_args(model)[0]
            described = (item, [])
            model = item
        elif origin is dict:
            return _PARAM if i == len(loc) - 1 else None
        else:
            return None
    return described


def _describe(described: Any) -> str:
    if described is _PARAM:
        return "a number, a string or a boolean"
    if isinstance(described, type) and issubclass(described, BaseModel):
        return "a table"
    if not isinstance(described, tuple):
        return "valid"
    annotation, metadata = described
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "a table"
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin: Any = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType) and len(args) == 1:  # an optional value: described as the value
        annotation = args[0]
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation, *extra = typing.get_args(annotation)
            metadata = [m for info in extra for m in getattr(info, "metadata", [])]
            origin = typing.get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(annotation))
    if origin is tuple:
        return "a list of " + ", ".join(str(a) for a in typing.get_args(typing.get_args(annotation)[0]))
    if origin is dict:
        return "a table of names to numbers, strings or booleans"
    name = {int: "an integer", float: "a number", bool: "true or false", str: "a non-empty string"}
    return name.get(annotation, str(annotation)) + _bounds(metadata)


def _bounds(metadata: list[Any]) -> str:
    low = next((f">= {m.ge:g}" for m in metadata if isinstance(m, Ge)), None)
    low = low or next((f"> {m.gt:g}" for m in metadata if isinstance(m, Gt)), None)
    high = next((f"<= {m.le:g}" for m in metadata if isinstance(m, Le)), None)
    high = high or next((f"< {m.lt:g}" for m in metadata if isinstance(m, Lt)), None)
    ge = next((m.ge for m in metadata if isinstance(m, Ge)), None)
    le = next((m.le for m in metadata if isinstance(m, Le)), None)
    if ge is not None and le is not None:
        return f" in [{ge:g}, {le:g}]"
    return "".join(f" {b}" for b in (low, high) if b)


def _suggest(loc: list[int | str]) -> str:
    described = _field_at(loc[:-1]) if len(loc) > 1 else Policy
    model = described[0] if isinstance(described, tuple) else described
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return ""
    known = sorted(model.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else f" (known keys: {', '.join(known)})"
