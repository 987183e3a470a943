"""The scorer's reads on a Redis Cluster: each command to the master owning its key's slot, all masters in one round
trip.

:class:`ClusterReads` keeps a table of the 16,384 slots' masters (from redis-py's ``CLUSTER SLOTS`` map) and one
:class:`~slipstream.serving.online_state.RawReads` socket pool per master: a call writes every master its commands,
then reads every master's replies, so a request touching three masters still waits for one round trip. The node
sockets carry the scorer client's timeout: a hung master is a fast 503, not a wait. A redirect (``MOVED``, ``ASK``,
``TRYAGAIN``, ``CLUSTERDOWN``) or a socket a restarted master closed refreshes the slot map and sends the call once
more (reads are safe to repeat); a timeout is not tried again. Every command's second element is its key.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import hiredis
import redis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from slipstream.serving.online_state import RawReads, pack, unavailable

if TYPE_CHECKING:
    from redis.cluster import RedisCluster

__all__ = ["ClusterPipelineReads", "ClusterReads", "cluster_reads_for"]

_REDIRECTS = (b"MOVED", b"ASK", b"TRYAGAIN", b"CLUSTERDOWN")


class ClusterReads:
    """Pipelined reads on plain sockets, routed by slot to a Redis Cluster's masters (see the module docstring)."""

    @staticmethod
    def supports(client: RedisCluster[bytes]) -> bool:
        node = client.get_default_node()
        return node is not None and node.redis_connection is not None and RawReads.supports(node.redis_connection)

    def __init__(self, client: RedisCluster[bytes]) -> None:
        self._client = client
        self._nodes: Any = client.nodes_manager  # the stubs type slots as str; redis-py takes int
        self._reads: dict[str, RawReads] = {}
        self._owner: list[RawReads | None] = []
        self._build()

    def _build(self) -> None:
        owner: list[RawReads | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
        reads: dict[str, RawReads] = {}
        for slot, nodes in self._nodes.slots_cache.items():
            primary = nodes[0] if nodes else None
            if primary is None or primary.redis_connection is None:
                continue
            if primary.name not in reads:
                known = self._reads.pop(primary.name, None)
                reads[primary.name] = known if known is not None else RawReads(primary.redis_connection)
            owner[int(slot)] = reads[primary.name]
        for gone in self._reads.values():  # masters no longer in the map
            gone.close()
        self._reads, self._owner = reads, owner

    def _refresh(self) -> None:
        try:
            self._nodes.initialize()
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
        self._build()

    def call(self, commands: Sequence[tuple[bytes, ...]]) -> list[Any]:
        """Send ``commands`` to their masters, all in one round trip; their replies, in order.
        Raises :class:`~slipstream.serving.exceptions.FeaturesUnavailableError`."""
        replies, why = self._call(commands)
        if replies is None:
            self._refresh()
            replies, why = self._call(commands)
        if replies is None:
            raise unavailable(redis.ConnectionError(f"the cluster redirected the read again after a refresh: {why}"))
        return replies

    def _call(self, commands: Sequence[tuple[bytes, ...]]) -> tuple[list[Any] | None, str]:
        """The replies, or None and why when the slot map has changed under the call (a redirect or a closed
        socket): refresh it and call again."""
        groups: dict[int, tuple[RawReads, list[int]]] = {}
        owner = self._owner
        for i, command in enumerate(commands):
            reads = owner[key_slot(command[1])]
            if reads is None:
                return None, f"slot {key_slot(command[1])} has no master in the slot map"
            groups.setdefault(id(reads), (reads, []))[1].append(i)
        out: list[Any] = [None] * len(commands)
        taken: list[tuple[RawReads, list[int], Any]] = []
        try:
            for reads, indexes in groups.values():  # write every master first ...
                conn, _pooled = reads.checkout()
                taken.append((reads, indexes, conn))
                conn[0].sendall(b"".join(pack(commands[i]) for i in indexes))
            while taken:  # ... then read each one's replies
                reads, indexes, conn = taken[0]
                replies = RawReads.receive(conn, len(indexes))
                taken.pop(0)
                reads.checkin(conn)
                for i, reply in zip(indexes, replies, strict=True):
                    out[i] = reply
        except ConnectionError as exc:  # a master closed a pooled socket (a restart) or refused a new one
            return None, f"{type(exc).__name__}: {exc}"
        except (OSError, redis.RedisError, hiredis.ProtocolError) as exc:  # a timeout among them: no second wait
            raise unavailable(exc) from exc
        finally:
            for _reads, _indexes, conn in taken:  # replies may be left unread on them: never reuse them
                conn[0].close()
        for reply in out:
            if isinstance(reply, hiredis.ReplyError):
                if str(reply).encode().startswith(_REDIRECTS):
                    return None, str(reply)
                raise unavailable(redis.ResponseError(str(reply)))
        return out, ""

    def close(self) -> None:
        for reads in self._reads.values():
            reads.close()


class ClusterPipelineReads:
    """The same calls through redis-py's cluster pipeline: for a cluster :class:`ClusterReads` does not speak to
    (TLS)."""

    def __init__(self, client: RedisCluster[bytes]) -> None:
        self._client = client

    def call(self, commands: Sequence[tuple[bytes, ...]]) -> list[Any]:
        try:
            pipe = self._client.pipeline()
            for command in commands:
                pipe.execute_command(*command)
            replies: list[Any] = pipe.execute()
        except (redis.RedisError, OSError) as exc:
            raise unavailable(exc) from exc
        return replies

    def close(self) -> None:
        self._client.close()


_SHARED: weakref.WeakKeyDictionary[Any, ClusterReads | ClusterPipelineReads] = weakref.WeakKeyDictionary()


def cluster_reads_for(client: RedisCluster[bytes]) -> ClusterReads | ClusterPipelineReads:
    """The fastest reader that speaks to ``client``'s cluster; one per client, so that the scorer's state store and
    its reco reader share one slot table and one socket pool per master (closing it only empties the pools)."""
    reads = _SHARED.get(client)
    if reads is None:
        reads = ClusterReads(client) if ClusterReads.supports(client) else ClusterPipelineReads(client)
        _SHARED[client] = reads
    return reads
