"""Recommendations: a user and the candidates a retrieval stage proposed in, the candidates ranked by the reco model
out — the same code for HTTP (``POST /v1/recommendations``) and for Kafka (:mod:`slipstream.serving.reco_stream`).

The features are built as training built them (``slipstream.models.reco.candidate_frame``), from the inputs the reco
definition declares once (``slipstream.features.definitions.reco``: :data:`RANKER_VIEWS`, :data:`FEATURES`): per
candidate, each view's latest stored row at or before the cut-off — ``user_activity`` (user),
``user_category_affinity`` (user, the candidate's category), ``user_item_recency`` (user, item) and
``item_popularity`` (item) — and each row's age in seconds at the cut-off; a missing row gives each feature its
declared default (0 for counts and ratios, -1 for ``USER_ITEM_SECONDS_SINCE_LAST``) and -1 for its age; then the
affinity ratios (category count over user count, 0 when the user count is 0) and the retrieval popularity (the
candidate's ``retrieval_views_7d``). Online the cut-off is the request's event time and the latest row is what the
online store holds. The store keeps only the newest row of an entity, so a request dated before a row it reads (clock
skew, a back-dated request) sees that row with a negative age: it is the best the store knows, and the request says
when it was made. An integration test holds the online features equal to ``candidate_frame``'s, value for value.

Per request: one pipelined Redis round trip (the user row, the user x category rows of the distinct candidate
categories, the user x item and item rows of every candidate), then the matrix (pure: :func:`feature_matrix`), then
one ONNX Runtime call with the model the slot held when the request started.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
import redis
from redis.cluster import RedisCluster

from slipstream.features.definitions.reco import AFFINITY, FEATURES, RANKER_VIEWS, WINDOWS, RankerView
from slipstream.features.exceptions import LayoutError
from slipstream.features.feast_layout import FeatureValue, ViewLayout, epoch_micros
from slipstream.features.windows import to_micros
from slipstream.serving.base import ModelProvider, RankedItem, Recommendation, ServingModel
from slipstream.serving.cluster_reads import ClusterPipelineReads, ClusterReads, cluster_reads_for
from slipstream.serving.exceptions import FeaturesUnavailableError, InvalidRequestError, ModelUnavailableError
from slipstream.serving.online_state import answers, check_binary, scorer_client, unavailable

if TYPE_CHECKING:
    from slipstream.features.redis_client import RedisClient

F64 = npt.NDArray[np.float64]
MAX_CANDIDATES: Final = 2000
_MAX_INT64: Final = (1 << 63) - 1
_MAX_INT32: Final = (1 << 31) - 1
MISSING_AGE: Final = -1.0  # the age of a row the store does not hold (training's fillna)


_INDEX: Final = {name: i for i, name in enumerate(FEATURES)}
_USER, _CATEGORY, _USER_ITEM, _ITEM = RANKER_VIEWS


# --------------------------------------------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True)
class RecoCandidate:
    item_id: int
    category_id: int
    retrieval_views_7d: float


@dataclass(frozen=True, slots=True)
class RecoQuery:
    """A validated request: who, when (epoch µs, the cut-off of every feature) and which candidates, in order."""

    request_id: str
    user_id: int
    event_time_us: int
    candidates: tuple[RecoCandidate, ...]


def _int(value: Any, field: str, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not 0 <= value <= high:
        msg = f"{field} must be an integer within 0..{high}, got {value!r}"
        raise InvalidRequestError(msg)
    return int(value)


def _candidate(raw: Any, i: int) -> RecoCandidate:
    where = f"candidates[{i}]"
    if not isinstance(raw, Mapping):
        msg = f"{where} must be an object with item_id, category_id and retrieval_views_7d, got {raw!r}"
        raise InvalidRequestError(msg)
    for name in ("item_id", "category_id"):
        if name not in raw:
            msg = f"{where}.{name} is missing: got fields {sorted(raw)!r}"
            raise InvalidRequestError(msg)
    views = raw.get("retrieval_views_7d", 0.0)
    if (
        isinstance(views, bool)
        or not isinstance(views, int | float | np.integer | np.floating)
        or not math.isfinite(views)
        or views < 0
    ):
        msg = f"{where}.retrieval_views_7d must be a finite number >= 0, got {views!r}"
        raise InvalidRequestError(msg)
    return RecoCandidate(
        _int(raw["item_id"], f"{where}.item_id", _MAX_INT64),
        _int(raw["category_id"], f"{where}.category_id", _MAX_INT32),
        float(views),
    )


def normalize_reco_request(request: Mapping[str, Any]) -> RecoQuery:
    """A request as the ranker needs it, or :class:`InvalidRequestError` naming the field and the bad value.

    Keys: ``request_id`` (text, or None/absent for a fresh uuid4 hex), ``user_id``, ``event_time`` (epoch µs or a
    timezone-aware datetime) and ``candidates`` (1..:data:`MAX_CANDIDATES` objects with ``item_id``,
    ``category_id`` and ``retrieval_views_7d``, default 0; no item twice). Other keys are ignored.
    """
    request_id = request.get("request_id")
    if request_id is None:
        request_id = uuid.uuid4().hex
    elif not isinstance(request_id, str) or not request_id or len(request_id) > 200:
        msg = f"request_id must be a non-empty text of at most 200 characters, got {request_id!r}"
        raise InvalidRequestError(msg)
    if "user_id" not in request:
        msg = f"user_id is missing: got fields {sorted(request)!r}"
        raise InvalidRequestError(msg)
    user_id = _int(request["user_id"], "user_id", _MAX_INT64)
    when = request.get("event_time")
    if isinstance(when, datetime):
        if when.tzinfo is None:
            msg = f"event_time must be timezone-aware, got {when.isoformat()!r}"
            raise InvalidRequestError(msg)
        event_time_us = to_micros(when)
    elif isinstance(when, int) and not isinstance(when, bool):
        event_time_us = when
    else:
        msg = f"event_time must be epoch microseconds or a timezone-aware datetime, got {when!r}"
        raise InvalidRequestError(msg)
    raw = request.get("candidates")
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes) or not 1 <= len(raw) <= MAX_CANDIDATES:
        shown = f"{len(raw)} candidates" if isinstance(raw, Sequence) else repr(raw)
        msg = f"candidates must be a list of 1..{MAX_CANDIDATES} items, got {shown}"
        raise InvalidRequestError(msg)
    candidates = tuple(_candidate(c, i) for i, c in enumerate(raw))
    seen: dict[int, int] = {}
    for i, c in enumerate(candidates):
        first = seen.setdefault(c.item_id, i)
        if first != i:
            msg = f"candidates[{i}].item_id={c.item_id} repeats candidates[{first}]: each item can be ranked once"
            raise InvalidRequestError(msg)
    return RecoQuery(request_id, user_id, event_time_us, candidates)


# --------------------------------------------------------------------------------------------------- features


@dataclass(frozen=True, slots=True)
class StoredRow:
    """One view's feature row as the online store holds it, and its event time (epoch µs)."""

    values: Mapping[str, FeatureValue]
    event_us: int


@dataclass(frozen=True, slots=True)
class RecoRows:
    """What the store held for one request (None: no row): the user's row, the user x category rows by category,
    and the user x item and item rows of each candidate, in candidate order."""

    user: StoredRow | None
    categories: Mapping[int, StoredRow | None]
    user_items: Sequence[StoredRow | None]
    items: Sequence[StoredRow | None]

    def all(self) -> Iterable[StoredRow | None]:
        yield self.user
        yield from self.categories.values()
        yield from self.user_items
        yield from self.items

    @property
    def newest_us(self) -> int | None:
        """The newest event time among the rows read (None when the store held none)."""
        times = [row.event_us for row in self.all() if row is not None]
        return max(times) if times else None


def _value(value: FeatureValue, default: float) -> float:
    """A stored value as training saw it: null or NaN become the missing-row default (pandas' fillna)."""
    if value is None or isinstance(value, str):
        return default
    number = float(value)
    return default if math.isnan(number) else number


def _view_values(view: RankerView, row: StoredRow | None, cutoff_us: int) -> tuple[list[float], list[float]]:
    """``(columns + [age], extra)`` of one view's row at the cut-off."""
    if row is None:
        return [*(0.0 for _ in view.columns), MISSING_AGE], list(view.defaults)
    values = row.values
    main = [_value(values.get(name), 0.0) for name in view.columns]
    main.append((cutoff_us - row.event_us) / 1e6)
    return main, [_value(values.get(name), d) for name, d in zip(view.extra, view.defaults, strict=True)]


def feature_matrix(cutoff_us: int, candidates: Sequence[RecoCandidate], rows: RecoRows) -> F64:
    """The features of every candidate at ``cutoff_us`` (epoch µs), one row each, columns in :data:`FEATURES` order.

    Pure: ``rows`` is what the store held (see :class:`RecoRows`); nothing is read here.
    """
    if len(rows.user_items) != len(candidates) or len(rows.items) != len(candidates):
        msg = (
            f"rows for {len(rows.user_items)} user x item and {len(rows.items)} item entities do not match "
            f"{len(candidates)} candidates"
        )
        raise InvalidRequestError(msg)
    user, _ = _view_values(_USER, rows.user, cutoff_us)
    by_category = {c: _view_values(_CATEGORY, row, cutoff_us)[0] for c, row in rows.categories.items()}
    user_counts = np.asarray(user[: len(WINDOWS)], dtype=np.float64)
    out = np.empty((len(candidates), len(FEATURES)), dtype=np.float64)
    for i, candidate in enumerate(candidates):
        try:
            category = by_category[candidate.category_id]
        except KeyError:
            msg = f"no user x category row (or its absence) given for category {candidate.category_id}"
            raise InvalidRequestError(msg) from None
        user_item, recency = _view_values(_USER_ITEM, rows.user_items[i], cutoff_us)
        item, _ = _view_values(_ITEM, rows.items[i], cutoff_us)
        out[i, : -len(AFFINITY) - 1] = [*user, *category, *user_item, *item, *recency]
        out[i, -1] = candidate.retrieval_views_7d
    start = _INDEX[f"USER_CAT_NB_EVENTS_{next(iter(WINDOWS))}"]
    category_counts = out[:, start : start + len(WINDOWS)]
    affinity = np.zeros_like(category_counts)
    np.divide(category_counts, user_counts, out=affinity, where=user_counts != 0)
    out[:, _INDEX[AFFINITY[0]] : _INDEX[AFFINITY[0]] + len(AFFINITY)] = affinity
    return out


# --------------------------------------------------------------------------------------------------- the store


# One command for a whole request: ARGV = the number of views, per view its field count and fields, then per key the
# (1-based) view it belongs to; the reply holds one HMGET reply per key. Packing and parsing one command with a few
# hundred keys costs half a pipeline of a few hundred HMGETs (2.6 vs 5.0 ms at 100 candidates, same busy box).
# Single Redis only: the keys of one request need not share a cluster slot; on a Redis Cluster the reader sends one
# HMGET per key instead, routed to the keys' masters in one round trip (slipstream.serving.cluster_reads).
HMGET_MANY = """
local nviews, a, fields = tonumber(ARGV[1]), 2, {}
for v = 1, nviews do
  local n = tonumber(ARGV[a])
  fields[v] = {unpack(ARGV, a + 1, a + n)}
  a = a + 1 + n
end
local out = {}
for k = 1, #KEYS do
  out[k] = redis.call('HMGET', KEYS[k], unpack(fields[tonumber(ARGV[a + k - 1])]))
end
return out
"""


class RecoRowReader:
    """Reads a request's rows in Feast's Redis layout in one round trip: one script call doing an ``HMGET``
    per
    entity (:data:`HMGET_MANY`).

    ``layouts``: at least the four :data:`RANKER_VIEWS` (e.g. ``slipstream.features.feast_repo.view_layouts([RECO],
    project)``).
    Raises :class:`FeaturesUnavailableError` when Redis cannot be read or holds a row it cannot decode.
    """

    def __init__(self, client: RedisClient, layouts: Mapping[str, ViewLayout]) -> None:
        check_binary(client)
        missing = [view.name for view in RANKER_VIEWS if view.name not in layouts]
        if missing:
            msg = f"no Redis layout for the reco views {missing!r}; known: {sorted(layouts)!r}"
            raise FeaturesUnavailableError(msg)
        self._client = client
        self._user, self._category, self._user_item, self._item = (layouts[view.name] for view in RANKER_VIEWS)
        self._field_args: list[bytes] = [b"4"]
        for layout in (self._user, self._category, self._user_item, self._item):
            self._field_args += [str(len(layout.fields)).encode(), *layout.fields]
        self._cluster: ClusterReads | ClusterPipelineReads | None = None
        if isinstance(client, RedisCluster):
            self._cluster = cluster_reads_for(client)
            self._fields = [[b"HMGET", b"", *layout.fields] for layout in self._layouts()]
        else:
            self._read = client.register_script(HMGET_MANY)

    def _layouts(self) -> tuple[ViewLayout, ViewLayout, ViewLayout, ViewLayout]:
        return self._user, self._category, self._user_item, self._item

    def _read_cluster(
        self, reads: ClusterReads | ClusterPipelineReads, keys: list[bytes], views: list[bytes]
    ) -> list[list[bytes | None]]:
        """One ``HMGET`` per key (``views``: each key's 1-based view), routed to the keys' masters."""
        commands = []
        for key, view in zip(keys, views, strict=True):
            command = list(self._fields[int(view) - 1])
            command[1] = key
            commands.append(tuple(command))
        replies: list[list[bytes | None]] = reads.call(commands)
        return replies

    @classmethod
    def from_url(cls, url: str, layouts: Mapping[str, ViewLayout], *, timeout_s: float = 0.25) -> RecoRowReader:
        """A reader on its own client; ``timeout_s`` bounds every read, so a hung Redis is a fast 503."""
        return cls(scorer_client(url, timeout_s), layouts)

    @property
    def client(self) -> RedisClient:
        return self._client

    def read_rows(self, user_id: int, candidates: Sequence[RecoCandidate]) -> RecoRows:
        categories = list(dict.fromkeys(c.category_id for c in candidates))
        n = len(candidates)
        keys = [self._user.key({"user_id": user_id})]
        keys += [self._category.key({"user_id": user_id, "category_id": c}) for c in categories]
        keys += [self._user_item.key({"user_id": user_id, "item_id": c.item_id}) for c in candidates]
        keys += [self._item.key({"item_id": c.item_id}) for c in candidates]
        views = [b"1"] + [b"2"] * len(categories) + [b"3"] * n + [b"4"] * n
        if self._cluster is not None:
            replies = self._read_cluster(self._cluster, keys, views)
        else:
            try:
                replies = self._read(keys=keys, args=[*self._field_args, *views])
            except redis.RedisError as exc:
                raise unavailable(exc) from exc
        try:
            user = _decode(self._user, replies[0])
            k = 1 + len(categories)
            by_category = {c: _decode(self._category, r) for c, r in zip(categories, replies[1:k], strict=True)}
            user_items = [_decode(self._user_item, r) for r in replies[k : k + n]]
            items = [_decode(self._item, r) for r in replies[k + n :]]
        except LayoutError as exc:
            msg = f"the online store holds a reco row that does not decode: {exc}"
            raise FeaturesUnavailableError(msg) from exc
        return RecoRows(user, by_category, user_items, items)

    def ping(self) -> bool:
        return answers(self._client)

    def close(self) -> None:
        """Close the sockets of a cluster's reads (a standalone client's pool is its owner's to close)."""
        if self._cluster is not None:
            self._cluster.close()


def _decode(layout: ViewLayout, reply: Sequence[bytes | None]) -> StoredRow | None:
    decoded = layout.decode(reply)
    return None if decoded is None else StoredRow(decoded[0], epoch_micros(decoded[1]))


# --------------------------------------------------------------------------------------------------- the scorer


class RecoScorer:
    """Ranks a user's candidates with the features of :data:`RANKER_VIEWS` and the model ``models`` holds."""

    def __init__(self, reader: RecoRowReader, models: ModelProvider) -> None:
        self.reader = reader
        self.models = models
        self._columns: tuple[tuple[str, ...], npt.NDArray[np.intp]] = ((), np.empty(0, dtype=np.intp))

    def _model_columns(self, model: ServingModel) -> npt.NDArray[np.intp]:
        names, columns = self._columns
        if names != model.feature_names:
            unknown = [n for n in model.feature_names if n not in _INDEX]
            if unknown:  # the slot refuses such a model; this guards a provider that does not
                msg = f"{model.name!r} version {model.version} needs features the ranker does not build: {unknown!r}"
                raise ModelUnavailableError(msg)
            columns = np.asarray([_INDEX[n] for n in model.feature_names], dtype=np.intp)
            self._columns = (model.feature_names, columns)
        return columns

    def rank(self, request: Mapping[str, Any]) -> Recommendation:
        """The request's candidates by descending score (ties keep the candidate order), ranks from 1.

        Raises :class:`InvalidRequestError` for a malformed request, :class:`ModelUnavailableError` when no model is
        loaded and :class:`FeaturesUnavailableError` when the store cannot be read: never a ranking without both.
        """
        return self.rank_query(normalize_reco_request(request))

    def rank_query(self, query: RecoQuery) -> Recommendation:
        start = time.perf_counter_ns()
        model = self.models.current  # held to the end: a swap meanwhile does not affect this request
        columns = self._model_columns(model)
        rows = self.reader.read_rows(query.user_id, query.candidates)
        read_done = time.perf_counter_ns()
        matrix = feature_matrix(query.event_time_us, query.candidates, rows)[:, columns]
        features_done = time.perf_counter_ns()
        scores = model.scorer.predict(matrix)
        done = time.perf_counter_ns()
        order = np.argsort(-scores, kind="stable")
        names = model.feature_names
        items = tuple(
            RankedItem(
                query.candidates[i].item_id,
                float(scores[i]),
                rank,
                dict(zip(names, matrix[i].tolist(), strict=True)),
            )
            for rank, i in enumerate(order.tolist(), start=1)
        )
        return Recommendation(
            request_id=query.request_id,
            user_id=query.user_id,
            event_time_us=query.event_time_us,
            model_name=model.name,
            model_version=model.version,
            items=items,
            feature_event_us=rows.newest_us,
            timings_us={
                "redis_us": (read_done - start) / 1000.0,
                "features_us": (features_done - read_done) / 1000.0,
                "model_us": (done - features_done) / 1000.0,
                "total_us": (time.perf_counter_ns() - start) / 1000.0,
            },
        )
