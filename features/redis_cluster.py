"""Writes on a Redis Cluster: each script call's keys in one hash slot, each master's calls in one packed write.

A multi-key ``EVALSHA`` is legal on a cluster only when all its keys hash to one slot. Feast's key is the serialized
entity key followed by the project, with no hash tag; an entity's rows of every view and the engine's state blob are
fields of that ONE key, so an entity never spans two slots, and no hash tag is needed (Feast's SDK could not read a
key we changed). Two entities, though, almost always hash to different slots (16,384 of them). So the writer groups
a batch's rows by slot (:func:`slot_calls`), packs each slot's rows into calls of up to ``rows_per_call`` keys, and
:class:`ClusterWrites` sends every master the calls of its slots pipelined on one of its connections: all masters
are written to before any is read, so a batch costs one round trip, not one per master.

What failed is sent again, and only that, after the cluster said where: ``MOVED`` (a slot moved, a failover)
refreshes the slot map; ``ASK`` (a slot migrating) sends the call to the importing node after ``ASKING``;
``TRYAGAIN`` and ``CLUSTERDOWN`` (a resharding or a failover under way) and a refused, dropped or timed-out connection
(a restarted master) pause, refresh and resend; ``NOSCRIPT`` (a restarted master lost its scripts) loads them on that
node first. Every call is idempotent, so resending one that did run is harmless.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import redis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    NoScriptError,
    SlotNotCoveredError,
    TryAgainError,
)

from slipstream.features.exceptions import OnlineStoreError

if TYPE_CHECKING:
    from redis.cluster import ClusterNode, RedisCluster

__all__ = ["ClusterWrites", "SlotCall", "slot_calls", "slot_groups"]

SlotCall = tuple[int, tuple[Any, ...]]  # (hash slot, the command)
_NODE_FAILURES = (redis.ConnectionError, redis.TimeoutError, OSError)


def slot_groups(keys: Sequence[bytes]) -> dict[int, list[int]]:
    """The indexes of ``keys`` by hash slot (redis-py's ``key_slot``, as the server computes it), each group in the
    order given: an entity's rows stay in batch order."""
    groups: dict[int, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key_slot(key), []).append(i)
    return groups


def slot_calls(
    items: Sequence[tuple[bytes, Sequence[Any]]], per_call: int, head: Sequence[Any] = ()
) -> list[tuple[int, list[Any]]]:
    """Script calls ``[numkeys, key..., *head, args...]`` of at most ``per_call`` of ``items`` (``(key, args)``), every
    call's keys in one slot; ``(slot, call)`` pairs, a slot's calls in the order of its items."""
    if per_call < 1:
        msg = f"per_call must be at least 1, got {per_call!r}"
        raise OnlineStoreError(msg)
    calls: list[tuple[int, list[Any]]] = []
    for slot, indexes in slot_groups([key for key, _ in items]).items():
        for start in range(0, len(indexes), per_call):
            chunk = [items[i] for i in indexes[start : start + per_call]]
            call: list[Any] = [len(chunk), *(key for key, _ in chunk), *head]
            for _, args in chunk:
                call += args
            calls.append((slot, call))
    return calls


class ClusterWrites:
    """Sends :data:`SlotCall` s to the masters owning their slots, resending what a redirect or a lost node failed.

    ``scripts``: the Lua sources a ``NOSCRIPT`` reply means to load. ``attempts`` bounds the rounds (the first send
    included); the pauses between rounds double from ``pause_s``: about 3 s in all with the defaults, the time a
    restarted local master takes to answer again.
    """

    def __init__(
        self, client: RedisCluster[bytes], scripts: Sequence[str], *, attempts: int = 8, pause_s: float = 0.025
    ) -> None:
        self._client = client
        self._nodes: Any = client.nodes_manager  # the stubs type slots as str; redis-py takes int
        self._loads: list[tuple[Any, ...]] = [("SCRIPT", "LOAD", source) for source in scripts]
        self._attempts = attempts
        self._pause_s = pause_s
        self._owner: list[ClusterNode | None] = []
        self._build()

    def _build(self) -> None:
        """Each slot's master, from the client's slot map (a list lookup; redis-py's own costs ~2 µs a call)."""
        owner: list[ClusterNode | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
        for slot, nodes in self._nodes.slots_cache.items():
            if nodes and nodes[0].redis_connection is not None:
                owner[int(slot)] = nodes[0]
        self._owner = owner

    def send(self, calls: Sequence[SlotCall]) -> list[Any]:
        """Every call's reply, in order; a call Redis refused for good (not a redirect) as its exception.

        Raises :class:`OnlineStoreError` if calls still fail after every attempt (some may have been applied)."""
        replies: list[Any] = [None] * len(calls)
        pending = list(range(len(calls)))
        asking: dict[int, tuple[str, int]] = {}
        load: set[str] = set()
        last: BaseException | None = None
        for attempt in range(self._attempts):
            plan: dict[str, tuple[ClusterNode, list[int]]] = {}
            retry: list[int] = []
            refresh = pause = False
            owner = self._owner
            for i in pending:
                try:
                    node = self._ask_node(asking[i]) if i in asking else owner[calls[i][0]]
                except SlotNotCoveredError as exc:
                    node, last = None, exc
                if node is None:  # not covered (a master down): the map may have changed
                    retry.append(i)
                    refresh = pause = True
                    continue
                plan.setdefault(node.name, (node, []))[1].append(i)
            next_asking: dict[int, tuple[str, int]] = {}
            next_load: set[str] = set()
            for name, (_node, indexes, result) in self._exchange(plan, calls, asking, load).items():
                if isinstance(result, BaseException):  # the node as a whole: down, restarted, unreachable
                    retry += indexes
                    refresh = pause = True
                    last = result
                    continue
                for i, reply in zip(indexes, result, strict=True):
                    if not isinstance(reply, redis.ResponseError):
                        replies[i] = reply
                        continue
                    if isinstance(reply, NoScriptError):
                        next_load.add(name)
                    elif isinstance(reply, AskError):
                        next_asking[i] = (reply.host, reply.port)
                    elif isinstance(reply, MovedError):
                        refresh = True
                    elif isinstance(reply, TryAgainError | ClusterDownError):
                        refresh = pause = True
                    else:
                        replies[i] = reply  # a real error of this call: the caller reports it
                        continue
                    retry.append(i)
                    last = reply
            if not retry:
                return replies
            pending, asking, load = retry, next_asking, next_load
            if pause and attempt + 1 < self._attempts:
                time.sleep(self._pause_s * 2**attempt)
            if refresh:
                try:
                    self._nodes.initialize()
                except redis.RedisError as exc:  # no node answers yet: the next round finds out again
                    last = exc
                self._build()
        msg = f"Redis Cluster still failed {len(pending)} of {len(calls)} calls after {self._attempts} attempts: {last}"
        raise OnlineStoreError(msg) from last

    def _ask_node(self, address: tuple[str, int]) -> ClusterNode:
        node = self._nodes.get_node(host=address[0], port=address[1])
        if node is None or node.redis_connection is None:
            self._nodes.initialize()
            node = self._nodes.get_node(host=address[0], port=address[1])
        if node is None or node.redis_connection is None:
            msg = f"Redis Cluster sent an ASK to {address[0]}:{address[1]}, a node it does not list"
            raise SlotNotCoveredError(msg)
        found: ClusterNode = node
        return found

    def _exchange(
        self,
        plan: dict[str, tuple[ClusterNode, list[int]]],
        calls: Sequence[SlotCall],
        asking: dict[int, tuple[str, int]],
        load: set[str],
    ) -> dict[str, tuple[ClusterNode, list[int], list[Any] | BaseException]]:
        """Write every node its commands, then read every node's replies: one round trip for the whole plan.

        A node whose connection fails gets the exception instead of replies; a connection is never reused with
        replies left unread on it."""
        sent: dict[str, tuple[ClusterNode, list[int], Any, list[str]]] = {}
        out: dict[str, tuple[ClusterNode, list[int], list[Any] | BaseException]] = {}
        for name, (node, indexes) in plan.items():
            commands: list[tuple[Any, ...]] = list(self._loads) if name in load else []
            kinds = ["skip"] * len(commands)  # which replies are the calls'
            for i in indexes:
                if i in asking:
                    commands.append(("ASKING",))
                    kinds.append("skip")
                commands.append(calls[i][1])
                kinds.append("call")
            pool = node.redis_connection.connection_pool  # type: ignore[union-attr]  # set for every listed node
            conn = None
            try:
                conn = pool.get_connection()
                conn.send_packed_command(conn.pack_commands(commands), check_health=False)
            except _NODE_FAILURES as exc:
                if conn is not None:
                    conn.disconnect()
                    pool.release(conn)
                out[name] = (node, indexes, exc)
                continue
            sent[name] = (node, indexes, conn, kinds)
        for name, (node, indexes, conn, kinds) in sent.items():
            pool = node.redis_connection.connection_pool  # type: ignore[union-attr]
            replies: list[Any] = []
            try:
                for kind in kinds:
                    try:
                        reply = conn.read_response()
                    except redis.ResponseError as exc:
                        reply = exc
                    if kind == "call":
                        replies.append(reply)
                out[name] = (node, indexes, replies)
            except _NODE_FAILURES as exc:
                conn.disconnect()
                out[name] = (node, indexes, exc)
            except BaseException:
                conn.disconnect()
                raise
            finally:
                pool.release(conn)
        return out
