"""The comparison half of `slipstream features verify`, in bounded memory.

The feature log is read into a :class:`VectorTable`: one float64 per feature and event, rows in the order of the
events file. The offline side is computed a view and a shard of its entities at a time (:func:`offline_parts`): a
view's features depend only on the events of its own entity, so each part is exact, and the offline engine holds
about ``1 / shards`` of the log at once (whole, it peaked at 2.6 GB on the 1.75 M-transaction simulation). Each part
is compared with the table as it comes (:class:`VectorCheck`), and only each entity's latest row is kept for the
online-store check.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from slipstream.exceptions import InputError
from slipstream.features.base import FeatureSet
from slipstream.features.offline import compute_offline, latest_view_rows

TOLERANCE = 1e-9
OFFLINE_SHARDS = 8


class VectorTable:
    """The feature log's newest vector per event, columnar: one float64 per feature and event, rows in the order
    of the events file. (A dict of features per event, as before, cost ~1.5 KB an event: ~2.6 GB of the 4.5 GB the
    full 1.75 M-transaction verify peaked at; this is 8 bytes a value.)"""

    def __init__(self, ids: Sequence[str], names: Sequence[str]) -> None:
        self.index = pd.Index(ids)
        if not self.index.is_unique:
            msg = "--events repeats an event id: the feature log cannot be lined up with the offline vectors"
            raise InputError(msg)
        self.names = list(names)
        self.values = np.full((len(self.index), len(self.names)), np.nan)
        self.seen = np.zeros(len(self.index), dtype=bool)
        self.unknown = 0  # vectors of events the offline side does not have

    def add(self, event_ids: Sequence[str], vectors: Sequence[Mapping[str, float]]) -> None:
        """Vectors in log order: a later one of the same event replaces the earlier (the engine's correction)."""
        names = self.names
        for row, vector in zip(self.index.get_indexer(pd.Index(list(event_ids))), vectors, strict=True):
            if row < 0:
                self.unknown += 1
                continue
            self.values[row] = [vector.get(name, np.nan) for name in names]
            self.seen[row] = True

    @property
    def received(self) -> int:
        return int(self.seen.sum())

    def present(self) -> list[int]:
        """Columns some vector carried: the features the engine computes."""
        return [j for j in range(len(self.names)) if not np.isnan(self.values[:, j]).all()]


class VectorCheck:
    """Offline vectors compared with the table part by part: mismatches per feature and the largest difference."""

    def __init__(self, table: VectorTable, id_field: str) -> None:
        self.table = table
        self.id_field = id_field
        self.carried = {table.names[j]: j for j in table.present()}  # features the engine computes
        self.mismatches: dict[str, int] = {}
        self.worst = 0.0
        self.offline_events = 0

    def add(self, vectors: pd.DataFrame) -> None:
        rows = self.table.index.get_indexer(pd.Index(vectors[self.id_field].astype(str)))
        known = rows >= 0
        rows = rows[known]
        for name, j in self.carried.items():
            if name not in vectors.columns:
                continue
            online = self.table.values[rows, j]
            diff = np.abs(online - vectors[name].to_numpy(dtype=float)[known])
            present = ~np.isnan(online)
            bad = int(np.sum(diff[present] > TOLERANCE)) + int(np.sum(~present))
            if bad:
                self.mismatches[name] = self.mismatches.get(name, 0) + bad
            if present.any():
                self.worst = max(self.worst, float(np.nanmax(diff[present])))

    def report(self) -> dict[str, Any]:
        return {
            "compared": len(self.table.index),
            "features_per_vector": len(self.carried),
            "missing_vectors": len(self.table.index) - self.table.received,
            "mismatches": int(sum(self.mismatches.values())),
            "mismatches_by_feature": dict(self.mismatches),
            "max_abs_diff": self.worst,
        }


def _shard_of(frame: pd.DataFrame, keys: Sequence[str], shards: int) -> np.ndarray[Any, Any]:
    hashed = pd.util.hash_pandas_object(frame[list(keys)], index=False).to_numpy()
    return np.asarray(hashed % np.uint64(shards), dtype=np.int64)


def offline_parts(
    feature_set: FeatureSet, events: Mapping[str, pd.DataFrame], shards: int = OFFLINE_SHARDS
) -> Iterator[tuple[pd.DataFrame, dict[str, pd.DataFrame]]]:
    """``(vectors, latest view rows)`` per part: each view (the first with the request features) over one shard of
    its entities. A set with derived features across views, or a topic without the view's join keys, is computed
    whole."""
    whole = shards <= 1 or bool(feature_set.derived)
    if not whole:
        for view in feature_set.views:
            topics = {s.topic for s in view.sources} | {feature_set.trigger}
            whole = whole or any(not set(view.entity.join_keys) <= set(events[t].columns) for t in topics)
    if whole:
        offline = compute_offline(feature_set, events)
        yield offline.vectors, latest_view_rows(offline.view_rows)
        return
    for i, view in enumerate(feature_set.views):
        request = feature_set.request if i == 0 else ()
        part_set = FeatureSet(f"{feature_set.name}-{view.name}", feature_set.trigger, request, (view,))
        ordered = sorted({s.topic for s in view.sources} | {feature_set.trigger})
        shard = {t: _shard_of(events[t], view.entity.join_keys, shards) for t in ordered}
        for number in range(shards):
            part = compute_offline(part_set, {t: events[t][shard[t] == number] for t in ordered})
            yield part.vectors, latest_view_rows(part.view_rows)


def check_offline(
    table: VectorTable, feature_set: FeatureSet, events: Mapping[str, pd.DataFrame], shards: int = OFFLINE_SHARDS
) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """The vector comparison's report, and per view the latest offline row of every entity (for the online store)."""
    check = VectorCheck(table, feature_set.views[0].source(feature_set.trigger).id_field)
    latest: dict[str, list[pd.DataFrame]] = {}
    for vectors, rows in offline_parts(feature_set, events, shards):
        check.add(vectors)
        for name, frame in rows.items():
            latest.setdefault(name, []).append(frame)
    return check.report(), {name: pd.concat(frames, ignore_index=True) for name, frames in latest.items()}


__all__ = ["OFFLINE_SHARDS", "VectorCheck", "VectorTable", "check_offline", "offline_parts"]
