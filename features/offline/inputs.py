"""The offline engine's inputs: each topic's frame checked, its replayed duplicates dropped, its times in microseconds.

Times become int64 microseconds since the epoch (``windows.to_micros``); a naive or non-time column is an error,
since event time is always timezone-aware. Duplicates (same id within a topic) count once: the first row wins, as
the online rings ignore a redelivered id.

Tie keys: windows.py orders events of equal time by ``event_id_int(id)`` (integer ids as they are, text ids by a
63-bit hash). Hashing is a Python call per id, so it is done only for the events that share a time with another
event of their topic; for every other event the order at equal time is never consulted and the key is 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from slipstream.features.base import Aggregate, FeatureSet, FeatureView, SourceSpec
from slipstream.features.exceptions import DefinitionError, FeatureError
from slipstream.features.windows import event_id_int

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]

TRIGGER_TIME = "event_time"
_TO_MICROS = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": -1_000}  # negative: divide (floor)


@dataclass(frozen=True)
class TopicEvents:
    """One topic's events, deduplicated; ``times`` holds every time column the definitions use, in microseconds."""

    topic: str
    frame: pd.DataFrame
    id_field: str
    tie_keys: I64
    rank: int
    times: Mapping[str, I64]

    def __len__(self) -> int:
        return len(self.frame)


def micros(column: pd.Series, topic: str, name: str) -> I64:
    """A tz-aware datetime (any unit) or integer-microsecond column as int64 microseconds since the epoch."""
    dtype = column.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        raw = column.to_numpy(dtype=f"datetime64[{dtype.unit}]").view(np.int64)
        if len(raw) and bool((raw == np.iinfo(np.int64).min).any()):
            msg = f"topic {topic!r}: column {name!r} has missing times (NaT)"
            raise FeatureError(msg)
        factor = _TO_MICROS[dtype.unit]
        out: I64 = raw * factor if factor > 0 else raw // -factor
        return out
    if pd.api.types.is_integer_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
        return column.to_numpy(dtype=np.int64)
    msg = f"topic {topic!r}: column {name!r} must be tz-aware datetimes or integer microseconds, got dtype {dtype}"
    raise FeatureError(msg)


def _tie_keys(ids: pd.Series, times: Iterable[I64]) -> I64:
    if pd.api.types.is_integer_dtype(ids.dtype) and not pd.api.types.is_bool_dtype(ids.dtype):
        return ids.to_numpy(dtype=np.int64)
    tied = np.zeros(len(ids), dtype=np.bool_)
    for values in times:
        tied |= pd.Series(values).duplicated(keep=False).to_numpy()
    keys = np.zeros(len(ids), dtype=np.int64)
    if tied.any():
        keys[tied] = np.fromiter((event_id_int(v) for v in ids.to_numpy(dtype=object)[tied]), np.int64)
    return keys


@dataclass(frozen=True)
class TopicPlan:
    """What the definitions read from one topic: its id field and time columns, and every column they need."""

    topic: str
    id_field: str
    time_columns: tuple[str, ...]
    columns: tuple[str, ...]
    rank: int


def _check(view: FeatureView, spec: SourceSpec, trigger: str) -> None:
    """What the offline engine relies on, and the rings too (an aggregate reads only the fields its source keeps)."""
    if spec.topic == trigger and (spec.time_field, spec.known_by or TRIGGER_TIME) != (TRIGGER_TIME, TRIGGER_TIME):
        msg = (
            f"view {view.name!r}: the trigger topic {spec.topic!r} must be placed and known at {TRIGGER_TIME!r}, "
            f"got time_field={spec.time_field!r}, known_by={spec.known_by!r}"
        )
        raise DefinitionError(msg)
    for feature in view.features:
        if isinstance(feature, Aggregate) and feature.source == spec.topic:
            fields = [f for f in (feature.field, feature.where.field if feature.where else None) if f]
            missing = [f for f in fields if f not in spec.fields]
            if missing:
                msg = (
                    f"feature {feature.name!r} of view {view.name!r} reads {missing} of {spec.topic!r}, "
                    f"which its source does not keep (fields={spec.fields})"
                )
                raise DefinitionError(msg)


def plan_topics(feature_set: FeatureSet) -> dict[str, TopicPlan]:
    """Per topic: the columns to check and the order rank (other topics first, the trigger last, at equal time)."""
    trigger = feature_set.trigger
    id_fields: dict[str, str] = {}
    times: dict[str, list[str]] = {trigger: [TRIGGER_TIME]}
    columns: dict[str, list[str]] = {}

    def add(bucket: list[str], *names: str) -> None:
        bucket.extend(n for n in names if n not in bucket)

    for view in feature_set.views:
        for spec in view.sources:
            _check(view, spec, trigger)
            if id_fields.setdefault(spec.topic, spec.id_field) != spec.id_field:
                msg = (
                    f"topic {spec.topic!r} has id field {spec.id_field!r} in view {view.name!r} "
                    f"but {id_fields[spec.topic]!r} in another view; duplicates are dropped by one id"
                )
                raise DefinitionError(msg)
            known = spec.known_by or spec.time_field
            add(times.setdefault(spec.topic, []), spec.time_field, known)
            needed = (spec.id_field, spec.time_field, known, *view.entity.join_keys, *spec.fields)
            add(columns.setdefault(spec.topic, []), *needed)
    if trigger not in id_fields:
        msg = f"feature set {feature_set.name!r}: no view reads its trigger topic {trigger!r}; its id field is unknown"
        raise DefinitionError(msg)
    add(columns[trigger], TRIGGER_TIME, *(r.field for r in feature_set.request))
    ordered = [t for t in id_fields if t != trigger] + [trigger]
    return {
        topic: TopicPlan(topic, id_fields[topic], tuple(times[topic]), tuple(columns[topic]), rank)
        for rank, topic in enumerate(ordered)
    }


def prepare(plan: TopicPlan, frame: pd.DataFrame) -> TopicEvents:
    """Check ``frame`` against ``plan``, drop duplicated ids (first wins) and convert the time columns."""
    missing = [c for c in plan.columns if c not in frame.columns]
    if missing:
        msg = f"topic {plan.topic!r}: events lack columns {missing}; they have {list(frame.columns)}"
        raise FeatureError(msg)
    duplicated = frame.duplicated(subset=[plan.id_field], keep="first").to_numpy()
    if duplicated.any():
        frame = frame.loc[~duplicated]
    if not frame.index.equals(pd.RangeIndex(len(frame))):
        frame = frame.reset_index(drop=True)
    times = {name: micros(frame[name], plan.topic, name) for name in plan.time_columns}
    keys = _tie_keys(frame[plan.id_field], times.values())
    return TopicEvents(plan.topic, frame, plan.id_field, keys, plan.rank, times)


def event_order(times: I64, ranks: I64, tie_keys: I64) -> I64:
    """The merged stream's order: known time, then topic (the trigger last), then id."""
    order: I64 = np.lexsort((tie_keys, ranks, times)).astype(np.int64)
    return order
