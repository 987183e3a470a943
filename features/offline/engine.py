"""compute_offline: a whole event log's features at once, equal to replaying it event by event through windows.py."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from slipstream.features.base import FeatureSet, RequestFeature
from slipstream.features.exceptions import FeatureError
from slipstream.features.offline.inputs import F64, TRIGGER_TIME, TopicEvents, event_order, micros, plan_topics, prepare
from slipstream.features.offline.view import (
    CREATED,
    EVENT_TIMESTAMP,
    compute_view_offline,
    float_frame,
    ratio_array,
    utc_times,
)
from slipstream.features.windows import EntityState, compute_view

VECTORS_FILE = "feature_vectors"
_HOUR_US = 3_600 * 1_000_000
_DAY_US = 24 * _HOUR_US
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)


@dataclass(frozen=True)
class OfflineFeatures:
    """``vectors``: one row per trigger event — its id, join keys, ``event_time`` (UTC), then every feature (request,
    each view's, derived), as of that event, itself included; in event order (time, id).

    ``view_rows``: per view, one row per event applied to an entity of the view — join keys (in the entity's
    declared types), ``event_timestamp`` and ``created`` (the event's known time, UTC) and the view's features
    (float64) as of that time; in event order (known time, other topics before the trigger, id). This is the
    Feast ``FileSource`` of the view.
    """

    vectors: pd.DataFrame
    view_rows: dict[str, pd.DataFrame]


def request_values(features: tuple[RequestFeature, ...], topic: TopicEvents) -> dict[str, F64]:
    """``windows.request_features`` for every event: a field as float, night (UTC hour <= 6), weekend."""
    out: dict[str, F64] = {}
    for feature in features:
        column = topic.frame[feature.field]
        if feature.kind == "field":
            try:
                out[feature.name] = column.to_numpy(dtype=np.float64)
            except (TypeError, ValueError) as exc:
                msg = f"request feature {feature.name!r}: field {feature.field!r} is not numeric ({column.dtype})"
                raise FeatureError(msg) from exc
            continue
        when = topic.times.get(feature.field)
        if when is None:
            when = micros(column, topic.topic, feature.field)
        if feature.kind == "night":
            out[feature.name] = ((when // _HOUR_US) % 24 <= 6).astype(np.float64)
        else:
            out[feature.name] = ((when // _DAY_US + _EPOCH_WEEKDAY) % 7 >= 5).astype(np.float64)
    return out


def compute_offline(
    feature_set: FeatureSet,
    events: Mapping[str, pd.DataFrame],
    *,
    progress: Callable[[str], None] | None = None,
) -> OfflineFeatures:
    """Every feature of ``feature_set`` over the event log ``events`` (topic name -> that topic's events).

    The result equals a sequential replay through :mod:`slipstream.features.windows` in which every event known by
    ``t`` is
    applied before the features at ``t`` are computed; replayed duplicates (same topic and id) count once, the
    first row winning. Every topic a view reads must be given (an empty frame is fine).
    """
    say = progress or (lambda _message: None)
    topics: dict[str, TopicEvents] = {}
    for name, plan in plan_topics(feature_set).items():
        if name not in events:
            msg = f"no events for topic {name!r} (feature set {feature_set.name!r} reads it); pass an empty frame"
            raise FeatureError(msg)
        topics[name] = prepare(plan, events[name])
        say(f"{name}: {len(topics[name]):,} events after dropping {len(events[name]) - len(topics[name]):,} dupes")
    trigger = topics[feature_set.trigger]
    time = trigger.times[TRIGGER_TIME]
    ids: dict[str, npt.NDArray[Any]] = {trigger.id_field: trigger.frame[trigger.id_field].to_numpy()}
    for view in feature_set.views:
        for key in view.entity.join_keys:
            if key in trigger.frame.columns and key not in ids:
                ids[key] = trigger.frame[key].to_numpy()
    values = request_values(feature_set.request, trigger)
    view_rows: dict[str, pd.DataFrame] = {}
    for view in feature_set.views:
        result = compute_view_offline(view, topics, feature_set.trigger)
        view_rows[view.name] = result.rows
        empty = compute_view(view, EntityState(), 0, feature_set.trigger, 0)  # an event no entity of it holds
        for name in view.feature_names:
            column = np.full(len(trigger), empty[name], dtype=np.float64)
            column[result.trigger_rows] = result.values[name]
            values[name] = column
        say(f"view {view.name}: {len(result.rows):,} rows, {len(view.features)} features")
    for derived in feature_set.derived:
        values[derived.name] = ratio_array(values[derived.numerator], values[derived.denominator], derived.default)
    order = event_order(time, np.zeros(len(time), dtype=np.int64), trigger.tie_keys)
    vectors = float_frame(values, order)
    for i, (column_name, column_values) in enumerate(ids.items()):
        vectors.insert(i, column_name, np.take(column_values, order))
    vectors.insert(len(ids), TRIGGER_TIME, utc_times(np.take(time, order)))
    return OfflineFeatures(vectors, view_rows)


def latest_view_rows(view_rows: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Per view and entity, the row with the greatest (event_timestamp, row order): what the online store holds.

    Row order breaks equal timestamps, so pass frames in the event order :func:`compute_offline` gives them. The
    join keys are the columns before ``event_timestamp``.
    """
    out: dict[str, pd.DataFrame] = {}
    for name, frame in view_rows.items():
        if EVENT_TIMESTAMP not in frame.columns:
            msg = f"view rows {name!r} have no {EVENT_TIMESTAMP!r} column: {list(frame.columns)}"
            raise FeatureError(msg)
        keys = list(frame.columns[: frame.columns.get_loc(EVENT_TIMESTAMP)])
        stamps = frame[EVENT_TIMESTAMP]
        ordered = frame if stamps.is_monotonic_increasing else frame.sort_values(EVENT_TIMESTAMP, kind="stable")
        out[name] = ordered.drop_duplicates(subset=keys, keep="last").reset_index(drop=True)
    return out


def _write(frame: pd.DataFrame, path: Path) -> None:
    """Atomically (write aside, then rename over), so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_offline(result: OfflineFeatures, out_dir: Path) -> dict[str, Path]:
    """``<out_dir>/<view>.parquet`` per view (its Feast ``FileSource``) and ``feature_vectors.parquet``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, frame in [*result.view_rows.items(), (VECTORS_FILE, result.vectors)]:
        paths[name] = out_dir / f"{name}.parquet"
        _write(frame, paths[name])
    return paths


__all__ = [
    "CREATED",
    "EVENT_TIMESTAMP",
    "OfflineFeatures",
    "compute_offline",
    "latest_view_rows",
    "write_offline",
]
