"""Write and read features in Feast's Redis layout ourselves: micro-batched pipelines, one round trip per read.

``RedisFeatureWriter.write_batch`` sends each batch as one pipelined write (no transaction) of ``EVALSHA`` calls of a
small Lua script that applies each row only if its event time is not older than the ``_ts:<view>`` Feast already
holds for that entity and view. The script reads Feast's own timestamp (a ``google.protobuf.Timestamp``), so the
ordering also holds against rows that Feast itself wrote (``materialize``, ``push``) and survives Feast deleting a
view's fields; no helper field is needed. Equal times overwrite, so replaying a batch is idempotent.

``RedisFeatureReader`` is the scorer's path: one ``HMGET`` of precomputed fields per entity, no Feast SDK.

Both take a standalone client or a Redis Cluster (:func:`slipstream.features.redis_client.redis_client`); on a cluster
the writer groups its calls by hash slot and master (:mod:`slipstream.features.redis_cluster`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

import redis
from redis.cluster import RedisCluster
from redis.exceptions import MovedError, NoScriptError

from slipstream.features.exceptions import LayoutError, OnlineStoreError
from slipstream.features.feast_layout import (
    FeatureValue,
    JoinKeyValue,
    OnlineFeatures,
    ReadPlan,
    ViewLayout,
)
from slipstream.features.redis_client import RedisClient, decodes_responses, redis_client
from slipstream.features.redis_cluster import ClusterWrites, slot_calls
from slipstream.features.redis_keys import key_project, project_key_count, project_keys

# redis-py's ConnectionPool: the stubs (types-redis 4.6) disagree with redis-py 7 on ``get_connection``'s arguments.
_Pool: TypeAlias = Any

__all__ = [
    "EntityStateBlob",
    "FeatureRow",
    "OnlineStoreError",
    "RedisFeatureReader",
    "RedisFeatureWriter",
    "RejectedRow",
    "WriteReport",
    "key_project",
    "project_key_count",
    "project_keys",
]

# One call applies up to ``rows_per_call`` rows. KEYS: one entity key per row. ARGV[1]: key TTL in seconds (0: none);
# then per row: "_ts:<view>", event time in epoch microseconds, n, and n field/value pairs ("_ts:<view>" included).
# Returns one 1 (written) or 0 (stale: the stored event time is newer) per row. The stored Timestamp is decoded with
# Lua's doubles: exact for event times up to the year 2255; a negative int64 (before 1970) is a 10-byte varint, so
# its bits above 35 are summed apart and the sign taken from bit 63.
APPLY_IF_NOT_OLDER = """
local ttl, a, out = ARGV[1], 2, {}
for k = 1, #KEYS do
  local key, micros, n = KEYS[k], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local stored, apply = redis.call('HGET', key, ARGV[a]), 1
  if stored then
    local seconds, nanos, i, len = 0, 0, 1, #stored
    while i <= len do
      local tag, lo, hi, shift, b = string.byte(stored, i), 0, 0, 0, 128
      i = i + 1
      while b >= 128 do
        b = string.byte(stored, i)
        if not b then return redis.error_reply('corrupt ' .. ARGV[a] .. ' field in key ' .. key) end
        i = i + 1
        if shift < 35 then lo = lo + (b % 128) * 2 ^ shift else hi = hi + (b % 128) * 2 ^ (shift - 35) end
        shift = shift + 7
      end
      if hi >= 2 ^ 28 then hi = hi - 2 ^ 29 end
      if tag == 8 then seconds = hi * 2 ^ 35 + lo elseif tag == 16 then nanos = lo end
    end
    if seconds * 1000000 + math.floor(nanos / 1000) > micros then apply = 0 end
  end
  if apply == 1 then
    redis.call('HSET', key, unpack(ARGV, a + 3, a + 2 + 2 * n))
    if ttl ~= '0' then redis.call('EXPIRE', key, ttl) end
  end
  out[k] = apply
  a = a + 3 + 2 * n
end
return out
"""
_SCRIPT_SHA = hashlib.sha1(APPLY_IF_NOT_OLDER.encode(), usedforsecurity=False).hexdigest()

# The engine's window states, one command for many entities: KEYS are the entities' keys, ARGV field/value pairs in
# the same order. One packed command instead of one HSET each: redis-py spends ~10 us of Python per command.
HSET_MANY = """
for k = 1, #KEYS do
  redis.call('HSET', KEYS[k], ARGV[2 * k - 1], ARGV[2 * k])
end
return #KEYS
"""
_HSET_MANY_SHA = hashlib.sha1(HSET_MANY.encode(), usedforsecurity=False).hexdigest()
STATES_PER_CALL = 256


@dataclass(frozen=True, slots=True)
class FeatureRow:
    """One entity's features of one view at one event time (timezone-aware)."""

    view: str
    join_keys: Mapping[str, JoinKeyValue]
    values: Mapping[str, FeatureValue]
    event_time: datetime


@dataclass(frozen=True, slots=True)
class EntityStateBlob:
    """The engine's window state of one entity and view (``EntityState.to_bytes()``), for the scorer to read."""

    view: str
    join_keys: Mapping[str, JoinKeyValue]
    data: bytes


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """A row that could not be encoded (unknown view, bad value, naive time): not written, kept for a dead letter."""

    index: int
    row: FeatureRow
    reason: str


@dataclass(frozen=True, slots=True)
class WriteReport:
    """``applied`` rows were written; ``stale`` were older than what Redis held; ``rejected`` were never sent."""

    applied: int
    stale: int
    rejected: tuple[RejectedRow, ...] = ()


def _check_bytes_client(client: RedisClient) -> None:
    if decodes_responses(client):
        msg = f"{client!r} decodes responses; Feast's layout is binary, create it with decode_responses=False"
        raise OnlineStoreError(msg)


class RedisFeatureWriter:
    """Writes :class:`FeatureRow` batches for the given views, monotonic in event time per entity and view.

    ``rows_per_call`` rows share one script call: fewer commands to pack and run (about 2x the rows/s of one call per
    row), while one call still holds Redis for only ~0.2 ms, about what one 16 KB read of a pipeline does anyway.
    ``key_ttl_seconds`` is Feast's option of that name: each written row sets the whole key's TTL (every view of the
    entity); a stale row sets nothing.
    """

    def __init__(
        self,
        client: RedisClient,
        layouts: Iterable[ViewLayout],
        *,
        key_ttl_seconds: int | None = None,
        rows_per_call: int = 32,
    ) -> None:
        _check_bytes_client(client)
        if key_ttl_seconds is not None and key_ttl_seconds <= 0:
            msg = f"key_ttl_seconds must be a positive number of seconds or None, got {key_ttl_seconds!r}"
            raise OnlineStoreError(msg)
        if not 1 <= rows_per_call <= 1000:
            msg = f"rows_per_call must be within 1..1000, got {rows_per_call!r}"
            raise OnlineStoreError(msg)
        self._client = client
        self._target: _Pool | ClusterWrites = (
            ClusterWrites(client, (APPLY_IF_NOT_OLDER, HSET_MANY))
            if isinstance(client, RedisCluster)
            else client.connection_pool
        )
        self._layouts: dict[str, ViewLayout] = {}
        for layout in layouts:
            if self._layouts.setdefault(layout.view, layout) is not layout:
                msg = f"two layouts for view {layout.view!r}"
                raise OnlineStoreError(msg)
        self._ttl = str(key_ttl_seconds or 0).encode()
        self._rows_per_call = rows_per_call

    @classmethod
    def from_url(
        cls, url: str, layouts: Iterable[ViewLayout], *, key_ttl_seconds: int | None = None
    ) -> RedisFeatureWriter:
        """A writer on its own client for ``url`` (``redis://host:port/db`` or ``redis+cluster://host:port,...``)."""
        return cls(redis_client(url), layouts, key_ttl_seconds=key_ttl_seconds)

    def _encode_row(self, row: FeatureRow) -> tuple[bytes, list[Any]]:
        """The row's key and its script arguments (timestamp field, micros, field count, field/value pairs); raises
        :class:`LayoutError` for an unknown view or a value that does not fit."""
        layout = self._layouts.get(row.view)
        if layout is None:
            msg = f"no layout for view {row.view!r}; known: {sorted(self._layouts)!r}"
            raise LayoutError(msg)
        key = layout.key(row.join_keys)
        micros, flat = layout.encode_row(row.values, row.event_time)
        return key, [layout.timestamp_field, micros, len(flat) // 2, *flat]

    def _encode(self, rows: Sequence[FeatureRow]) -> tuple[list[list[Any]], list[RejectedRow]]:
        """Script calls (``[key, ..., ttl, row args, ...]``, ``numkeys`` first) and the rows that failed to encode."""
        calls: list[list[Any]] = []
        keys: list[Any] = []
        args: list[Any] = [self._ttl]
        rejected: list[RejectedRow] = []
        for index, row in enumerate(rows):
            try:
                key, row_args = self._encode_row(row)
            except LayoutError as exc:
                rejected.append(RejectedRow(index, row, str(exc)))
                continue
            keys.append(key)
            args += row_args
            if len(keys) == self._rows_per_call:
                calls.append([len(keys), *keys, *args])
                keys, args = [], [self._ttl]
        if keys:
            calls.append([len(keys), *keys, *args])
        return calls, rejected

    def _state_calls(self, states: Sequence[EntityStateBlob]) -> list[list[Any]]:
        """``HSET_MANY`` calls (``numkeys`` first) writing each blob into its entity's hash, 256 per call."""
        calls: list[list[Any]] = []
        keys: list[bytes] = []
        args: list[bytes] = []
        for blob in states:
            layout = self._layouts.get(blob.view)
            if layout is None:
                msg = f"no layout for view {blob.view!r}; known: {sorted(self._layouts)!r}"
                raise OnlineStoreError(msg)
            keys.append(layout.key(blob.join_keys))
            args += (layout.state_field, blob.data)
            if len(keys) == STATES_PER_CALL:
                calls.append([len(keys), *keys, *args])
                keys, args = [], []
        if keys:
            calls.append([len(keys), *keys, *args])
        return calls

    def _send(
        self, pool: _Pool, calls: list[list[Any]], state_calls: list[list[Any]], *, load: bool = False
    ) -> list[Any]:
        """Every call in one write on a pooled connection, the replies in order (an error reply as its exception).

        No ``Pipeline`` object: it cost ~90 µs of Python per batch, and a stage writes a batch every few ms."""
        commands: list[tuple[Any, ...]] = []
        if load:
            commands += [("SCRIPT", "LOAD", APPLY_IF_NOT_OLDER), ("SCRIPT", "LOAD", HSET_MANY)]
        commands += [("EVALSHA", _SCRIPT_SHA, *call) for call in calls]
        commands += [("EVALSHA", _HSET_MANY_SHA, *call) for call in state_calls]
        conn = pool.get_connection()
        packed = conn.pack_commands(commands)

        def exchange() -> list[Any]:
            conn.send_packed_command(packed, check_health=False)
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(conn.read_response())
                except redis.ResponseError as exc:  # this call failed; the replies after it are still to be read
                    replies.append(exc)
            return replies

        try:
            # The client's retry policy, as a Pipeline applied it: a dropped connection or a Redis still loading
            # after a restart is tried again on a fresh connection (every call is idempotent).
            results: list[Any] = conn.retry.call_with_retry(exchange, lambda _error: conn.disconnect())
        except BaseException:
            conn.disconnect()  # replies may be left unread on it: never reuse it as is
            raise
        finally:
            pool.release(conn)
        return results[2:] if load else results

    def write_batch(self, rows: Sequence[FeatureRow], states: Sequence[EntityStateBlob] = ()) -> WriteReport:
        """Write ``rows`` (and the entities' window ``states``) in one pipeline; later rows of the batch see earlier
        ones (everything runs in order).

        Raises :class:`OnlineStoreError` if Redis fails a call (some rows may be written): every row is safe to
        write again.
        """
        target = self._target
        if isinstance(target, ClusterWrites):
            return self._write_cluster(target, rows, states)
        calls, rejected = self._encode(rows)
        state_calls = self._state_calls(states)
        if not calls and not state_calls:
            return WriteReport(0, 0, tuple(rejected))
        try:
            results = self._send(target, calls, state_calls)
            if any(isinstance(r, NoScriptError) for r in results):
                # First use, a restarted Redis or SCRIPT FLUSH: load them and send the whole batch again (idempotent).
                results = self._send(target, calls, state_calls, load=True)
        except redis.RedisError as exc:
            msg = f"writing {len(rows) - len(rejected)} rows to Redis failed: {exc}"
            raise OnlineStoreError(msg) from exc
        return _report(results, len(calls), len(rows), len(states), rejected)

    def _write_cluster(
        self, target: ClusterWrites, rows: Sequence[FeatureRow], states: Sequence[EntityStateBlob]
    ) -> WriteReport:
        """:meth:`write_batch` on a Redis Cluster: the same calls, each of one hash slot, sent to their masters."""
        items: list[tuple[bytes, list[Any]]] = []
        rejected: list[RejectedRow] = []
        for index, row in enumerate(rows):
            try:
                items.append(self._encode_row(row))
            except LayoutError as exc:
                rejected.append(RejectedRow(index, row, str(exc)))
        state_items: list[tuple[bytes, list[Any]]] = []
        for blob in states:
            layout = self._layouts.get(blob.view)
            if layout is None:
                msg = f"no layout for view {blob.view!r}; known: {sorted(self._layouts)!r}"
                raise OnlineStoreError(msg)
            state_items.append((layout.key(blob.join_keys), [layout.state_field, blob.data]))
        row_calls = slot_calls(items, self._rows_per_call, [self._ttl])
        calls = [(slot, ("EVALSHA", _SCRIPT_SHA, *call)) for slot, call in row_calls]
        n_row_calls = len(calls)
        calls += [(slot, ("EVALSHA", _HSET_MANY_SHA, *c)) for slot, c in slot_calls(state_items, STATES_PER_CALL)]
        if not calls:
            return WriteReport(0, 0, tuple(rejected))
        return _report(target.send(calls), n_row_calls, len(rows), len(states), rejected)


def _report(
    results: list[Any], n_row_calls: int, n_rows: int, n_states: int, rejected: list[RejectedRow]
) -> WriteReport:
    """The batch's :class:`WriteReport` from its calls' replies (row calls first); :class:`OnlineStoreError` if Redis
    failed any call."""
    errors = [r for r in results if isinstance(r, Exception)]
    if errors:
        hint = ""
        if isinstance(errors[0], MovedError):
            hint = " (this Redis is a cluster node: name the cluster with redis+cluster://host:port,...)"
        msg = f"Redis failed {len(errors)} of {len(results)} calls for {n_rows} rows and {n_states} states, first: "
        raise OnlineStoreError(msg + f"{errors[0]}{hint}") from errors[0]
    flags = [flag for result in results[:n_row_calls] for flag in result]
    applied = sum(flags)
    return WriteReport(applied, len(flags) - applied, tuple(rejected))


class RedisFeatureReader:
    """Reads some views' features for an entity in one round trip (one ``HMGET`` per distinct set of join keys)."""

    def __init__(self, client: RedisClient, layouts: Iterable[ViewLayout], *, full_feature_names: bool = False) -> None:
        _check_bytes_client(client)
        self._client = client
        self.plan = ReadPlan(layouts, full_feature_names=full_feature_names)
        self._single = len(self.plan.groups) == 1

    @classmethod
    def from_url(
        cls, url: str, layouts: Iterable[ViewLayout], *, full_feature_names: bool = False
    ) -> RedisFeatureReader:
        """A reader on its own client for ``url`` (``redis://host:port/db`` or ``redis+cluster://host:port,...``)."""
        return cls(redis_client(url), layouts, full_feature_names=full_feature_names)

    def read(self, join_keys: Mapping[str, JoinKeyValue]) -> OnlineFeatures | None:
        """The entity's features and event times; None if Redis holds none of the views for it."""
        keys = self.plan.keys(join_keys)
        try:
            if self._single:
                replies = [self._client.hmget(keys[0], self.plan.groups[0][2])]
            else:
                with self._client.pipeline(transaction=False) as pipe:
                    for key, (_, _, fields) in zip(keys, self.plan.groups, strict=True):
                        pipe.hmget(key, fields)
                    replies = pipe.execute()
        except redis.RedisError as exc:
            msg = f"reading {join_keys!r} from Redis failed: {exc}"
            raise OnlineStoreError(msg) from exc
        return self.plan.decode(replies)

    def read_many(self, entities: Sequence[Mapping[str, JoinKeyValue]]) -> list[OnlineFeatures | None]:
        """:meth:`read` for many entities in one pipelined round trip, in order."""
        groups = self.plan.groups
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for join_keys in entities:
                    for key, (_, _, fields) in zip(self.plan.keys(join_keys), groups, strict=True):
                        pipe.hmget(key, fields)
                replies = pipe.execute()
        except redis.RedisError as exc:
            msg = f"reading {len(entities)} entities from Redis failed: {exc}"
            raise OnlineStoreError(msg) from exc
        n = len(groups)
        return [self.plan.decode(replies[i : i + n]) for i in range(0, len(replies), n)]
