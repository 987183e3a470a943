"""The offline engine: a whole event log's features at once, vectorised, equal to the online windows.

:func:`compute_offline` gives, for a :class:`~features.base.FeatureSet` and its topics' events, the feature vector of
every trigger event and, per view, one Feast source row per event applied to it (:class:`OfflineFeatures`).
Correctness is defined by :mod:`slipstream.features.windows`: the result equals replaying the log event by event
through it,
every event known by ``t`` applied before the features at ``t`` are computed.

How (numpy, no loop over events): per view source, the events sorted by (entity, placement time, id) under one int64
composite key (``index``); every window bound of every query is one ``np.searchsorted``; counts are index
differences, sums differences of per-entity prefix sums, min / max a sparse table (``aggregate``). Events known
later than placed (labels) take an extra bound when the delay is constant, and are filtered event by event over the
gathered windows when it is not.

Modules: ``inputs`` (checks, duplicates, times), ``index`` (sorted events and searches), ``aggregate`` (features at
queries), ``view`` (one view), ``engine`` (feature sets, vectors, latest rows, parquet files).
"""

from slipstream.features.offline.engine import OfflineFeatures, compute_offline, latest_view_rows, write_offline
from slipstream.features.offline.view import CREATED, EVENT_TIMESTAMP

__all__ = ["CREATED", "EVENT_TIMESTAMP", "OfflineFeatures", "compute_offline", "latest_view_rows", "write_offline"]
