"""One feature view, offline: its entities, its queries (every event applied to it) and its features at each.

A *query* is an event of one of the view's sources whose join keys are all present, at its known time (``known_by``
or else ``time_field``): it becomes a row of the view's Feast source. When the trigger topic is not a source of the
view, the trigger's events are queries too (for the feature vectors) but not rows. Queries are evaluated sorted by
(entity, time), so every window search walks the index in order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from slipstream.features.base import Aggregate, Dtype, FeatureView, Where
from slipstream.features.exceptions import DefinitionError, FeatureError
from slipstream.features.offline.aggregate import Evaluator, Queries
from slipstream.features.offline.index import KEY_LIMIT, SortedIndex
from slipstream.features.offline.inputs import F64, I64, TopicEvents, event_order

EVENT_TIMESTAMP = "event_timestamp"
CREATED = "created"


@dataclass(frozen=True)
class ViewResult:
    rows: pd.DataFrame  # the view's Feast source rows, in event order
    trigger_rows: I64  # rows of the trigger frame with a value here
    values: dict[str, F64]  # the view's features at those trigger rows


def utc_times(values: I64) -> pd.DatetimeIndex:
    """int64 microseconds as tz-aware UTC times (microsecond unit, as the Feast sources declare it)."""
    return pd.DatetimeIndex(values.astype("datetime64[us]")).tz_localize("UTC")


def ratio_array(numerator: F64, denominator: F64, default: float) -> F64:
    """``numerator / denominator``, ``default`` where the denominator is 0 (``windows.ratio``)."""
    out = np.full(len(numerator), default, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


def entity_codes(frames: Sequence[pd.DataFrame], keys: Sequence[str]) -> tuple[list[I64], int]:
    """Dense entity numbers shared by every frame (-1 where a join key is missing), and how many there are."""
    sizes = [len(f) for f in frames]
    combined: I64 = np.zeros(sum(sizes), dtype=np.int64)
    for i, key in enumerate(keys):
        codes, uniques = pd.factorize(np.concatenate([f[key].to_numpy() for f in frames]))
        if i == 0:
            combined = codes.astype(np.int64)
            continue
        valid = (combined >= 0) & (codes >= 0)
        merged = combined * len(uniques) + codes
        combined = np.full(len(merged), -1, dtype=np.int64)
        combined[valid] = pd.factorize(merged[valid])[0]
    n_entities = int(combined.max()) + 1 if len(combined) else 0
    return list(np.split(combined, np.cumsum(sizes)[:-1])), n_entities


def cast_key(values: npt.NDArray[np.generic], dtype: Dtype, view: str, key: str) -> npt.NDArray[np.generic]:
    """Join key values in the entity's declared type (what the Feast source and the online key use)."""
    if dtype == "string":
        return values.astype(str).astype(object)
    target = np.dtype(np.int64) if dtype == "int64" else np.dtype(np.int32)
    try:
        wide = values.astype(np.int64)
    except (TypeError, ValueError, OverflowError) as exc:
        msg = f"view {view!r}: join key {key!r} must be integers for {dtype}, got dtype {values.dtype}"
        raise FeatureError(msg) from exc
    info = np.iinfo(target)
    bad = (wide < info.min) | (wide > info.max)
    if bad.any():
        msg = f"view {view!r}: join key {key!r} value {int(wide[bad][0])} does not fit {dtype}"
        raise FeatureError(msg)
    return wide.astype(target)


@dataclass(frozen=True)
class _Events:
    """The queries in concatenation order (source by source), before sorting."""

    entity: I64
    time: I64
    tie_keys: I64
    rank: I64
    topic: I64
    row: I64
    trigger: npt.NDArray[np.bool_]


def _events(view: FeatureView, topics: Mapping[str, TopicEvents], trigger: str, codes: list[I64]) -> _Events:
    parts: list[tuple[I64, ...]] = []
    specs = [(i, s.topic, s.known_by or s.time_field) for i, s in enumerate(view.sources)]
    if len(codes) > len(view.sources):
        specs.append((-1, trigger, "event_time"))
    for (number, name, known), code in zip(specs, codes, strict=True):
        events = topics[name]
        rows = np.flatnonzero(code >= 0).astype(np.int64)
        n = len(rows)
        parts.append(
            (
                code[rows],
                events.times[known][rows],
                events.tie_keys[rows],
                np.full(n, events.rank, dtype=np.int64),
                np.full(n, number, dtype=np.int64),
                rows,
                np.full(n, int(name == trigger), dtype=np.int64),
            )
        )
    columns = [np.concatenate(c) for c in zip(*parts, strict=True)]
    entity, time, tie_keys, rank, topic, row, trigger_flag = columns
    return _Events(entity, time, tie_keys, rank, topic, row, trigger_flag.astype(np.bool_))


def compute_view_offline(view: FeatureView, topics: Mapping[str, TopicEvents], trigger: str) -> ViewResult:
    """Every feature of ``view`` at every event applied to it, and at every trigger event."""
    names = [s.topic for s in view.sources]
    if len(names) != len(set(names)):
        msg = f"view {view.name!r} lists a topic twice: {names}"
        raise DefinitionError(msg)
    keys = view.entity.join_keys
    frames = [topics[n].frame for n in names]
    if trigger not in names and set(keys) <= set(topics[trigger].frame.columns):
        frames.append(topics[trigger].frame)
    codes, n_entities = entity_codes(frames, keys)
    events = _events(view, topics, trigger, codes)
    order = _entity_time_order(events.entity, events.time, n_entities)
    queries = Queries(
        np.take(events.entity, order),
        np.take(events.time, order),
        np.take(events.tie_keys, order),
        np.take(events.trigger, order),
        np.take(events.topic, order),
        np.take(events.row, order),
    )
    evaluators: dict[tuple[int, Where | None], Evaluator] = {}
    values: dict[str, F64] = {}
    for feature in view.features:
        if isinstance(feature, Aggregate):
            source = names.index(feature.source)
            key = (source, feature.where)
            if key not in evaluators:
                evaluators[key] = _evaluator(view, source, feature.where, topics, trigger, codes, n_entities, queries)
            values[feature.name] = evaluators[key].evaluate(feature)
        else:
            num, den = values[feature.numerator], values[feature.denominator]
            values[feature.name] = ratio_array(num, den, feature.default)
    return _result(view, topics, events, order, values)


def _entity_time_order(entity: I64, time: I64, n_entities: int) -> I64:
    """Positions sorted by (entity, time): one int64 key when it fits, else a two-key sort."""
    if len(time) == 0:
        return np.zeros(0, dtype=np.int64)
    base, span = int(time.min()), int(time.max()) - int(time.min()) + 1
    if (n_entities + 1) * span < KEY_LIMIT:
        order: I64 = np.argsort(entity * span + (time - base)).astype(np.int64)
    else:
        order = np.lexsort((time, entity)).astype(np.int64)
    return order


def _evaluator(
    view: FeatureView,
    source: int,
    where: Where | None,
    topics: Mapping[str, TopicEvents],
    trigger: str,
    codes: list[I64],
    n_entities: int,
    queries: Queries,
) -> Evaluator:
    spec = view.sources[source]
    topic = topics[spec.topic]
    keep = codes[source] >= 0
    if where is not None:
        keep &= (topic.frame[where.field] == where.value).to_numpy(dtype=np.bool_)
    rows = np.flatnonzero(keep).astype(np.int64)
    known = topic.times[spec.known_by or spec.time_field]
    index = SortedIndex(
        topic.frame,
        rows,
        codes[source][rows],
        topic.times[spec.time_field][rows],
        known[rows],
        topic.tie_keys[rows],
        n_entities,
    )
    own: I64 | None = None
    if spec.topic == trigger:
        own = np.full(len(queries), -1, dtype=np.int64)
        mine = queries.topic == source
        own[mine] = index.positions_of(len(topic))[queries.row[mine]]
    return Evaluator(index, queries, own)


def float_frame(columns: Mapping[str, F64], take: I64) -> pd.DataFrame:
    """``columns`` gathered at ``take`` into one float64 block (no per-column frame consolidation)."""
    block = np.empty((len(columns), len(take)), dtype=np.float64)
    for j, column in enumerate(columns.values()):
        np.take(column, take, out=block[j])
    return pd.DataFrame(block.T, columns=list(columns), copy=False)


def _result(
    view: FeatureView, topics: Mapping[str, TopicEvents], events: _Events, order: I64, values: dict[str, F64]
) -> ViewResult:
    """The view's rows in event order; ``values`` are in query order, ``events[order]``."""
    at = np.empty_like(order)
    at[order] = np.arange(len(order), dtype=np.int64)
    in_view = np.flatnonzero(events.topic >= 0)  # sources come first in ``events``, trigger-only queries last
    sequence = in_view[event_order(events.time[in_view], events.rank[in_view], events.tie_keys[in_view])]
    rows = float_frame({name: values[name] for name in view.feature_names}, at[sequence])
    for i, (key, dtype) in enumerate(zip(view.entity.join_keys, view.entity.dtypes, strict=True)):
        raw = np.concatenate(
            [topics[s.topic].frame[key].to_numpy()[events.row[events.topic == n]] for n, s in enumerate(view.sources)]
        )
        rows.insert(i, key, cast_key(np.take(raw, sequence), dtype, view.name, key))
    stamps = utc_times(np.take(events.time, sequence))
    rows.insert(len(view.entity.join_keys), EVENT_TIMESTAMP, stamps)
    rows.insert(len(view.entity.join_keys) + 1, CREATED, stamps)
    triggered = np.flatnonzero(events.trigger)
    return ViewResult(
        rows=rows,
        trigger_rows=events.row[triggered],
        values={name: values[name][at[triggered]] for name in view.feature_names},
    )
