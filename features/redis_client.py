"""The one place a Redis client is made: a standalone ``redis.Redis`` or a ``redis.cluster.RedisCluster``, chosen by
the URL.

* ``redis://[user:password@]host[:port][/db]`` (``rediss://`` for TLS): one Redis server, as before.
* ``redis+cluster://[user:password@]host:port[,host:port...][/0]`` (``rediss+cluster://``): a Redis Cluster; the
  hosts are startup nodes (any master or replica will do: the client asks ``CLUSTER SLOTS`` for the rest). A cluster
  has only database 0.

The URL decides, not a probe of the server (``INFO cluster``): the choice is then visible in every setting and
status line, Feast's ``feature_store.yaml`` (``redis_type: redis_cluster``) is written without a round trip to a
server that may not be up yet, and a client is never silently of the other kind after a failover or a restart. A
standalone client pointed at a cluster node fails on the first write with a ``MOVED`` reply; the writer's error then
says to use ``redis+cluster://``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import unquote, urlsplit

import redis
from redis.cluster import ClusterNode, RedisCluster

from slipstream.features.exceptions import OnlineStoreError
from slipstream.schemas.secrets import mask_url

if TYPE_CHECKING:
    from redis import Redis

__all__ = [
    "CLUSTER_SCHEMES",
    "RedisClient",
    "RedisTarget",
    "cluster_url",
    "decodes_responses",
    "is_cluster",
    "is_cluster_url",
    "parse_redis_url",
    "redis_client",
]

RedisClient: TypeAlias = "Redis[bytes] | RedisCluster[bytes]"
CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}  # scheme -> TLS
_SCHEMES = {"redis": False, "rediss": True, **CLUSTER_SCHEMES}


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """What a Redis URL names: one server or a cluster's startup nodes, and how to log in."""

    cluster: bool
    nodes: tuple[tuple[str, int], ...]
    db: int = 0
    ssl: bool = False
    username: str | None = None
    password: str | None = None


def _bad(url: str, why: str) -> OnlineStoreError:
    return OnlineStoreError(f"redis_url {mask_url(url)!r} {why}")


def _node(url: str, item: str) -> tuple[str, int]:
    host, sep, port = item.rpartition(":")
    if not sep:
        host, port = item, "6379"
    if not host or any(ch in host for ch in " []/") or not port.isdigit() or not 1 <= int(port) <= 65535:
        msg = f"names a node {item!r} that is not host:port (IPv6 hosts are not supported)"
        raise _bad(url, msg)
    return host, int(port)


def parse_redis_url(url: str) -> RedisTarget:
    """``url`` as a :class:`RedisTarget`; :class:`OnlineStoreError` quoting the URL (password hidden) if it is not
    one of the forms in this module's docstring."""
    scheme, sep, _rest = url.partition("://")
    if not sep or scheme not in _SCHEMES:
        msg = "must start with redis://, rediss://, redis+cluster:// or rediss+cluster://"
        raise _bad(url, msg)
    cluster = scheme in CLUSTER_SCHEMES
    parts = urlsplit("redis://" + url.partition("://")[2])  # urlsplit parses user:password@ the same for any netloc
    if parts.query or parts.fragment:
        raise _bad(url, "has query parameters, which Slipstream does not support")
    netloc = parts.netloc.rpartition("@")[2]
    if not netloc:
        raise _bad(url, "names no host")
    items = netloc.split(",")
    if len(items) > 1 and not cluster:
        raise _bad(url, "names several hosts: a Redis Cluster's URL starts with redis+cluster://")
    db_text = parts.path.strip("/") or "0"
    if not db_text.isdigit():
        raise _bad(url, f"has a database {db_text!r} that is not a number")
    if cluster and int(db_text) != 0:
        raise _bad(url, "names a database other than 0: a Redis Cluster has only database 0")
    return RedisTarget(
        cluster=cluster,
        nodes=tuple(_node(url, item) for item in items),
        db=int(db_text),
        ssl=_SCHEMES[scheme],
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def cluster_url(nodes: list[tuple[str, int]] | tuple[tuple[str, int], ...], *, ssl: bool = False) -> str:
    """``redis+cluster://h1:p1,h2:p2,...`` for a cluster's nodes."""
    return f"{'rediss' if ssl else 'redis'}+cluster://{','.join(f'{h}:{p}' for h, p in nodes)}"


def redis_client(url: str, *, timeout_s: float | None = None, health_check_interval: int | None = None) -> RedisClient:
    """A binary client (``decode_responses=False``) for ``url``: ``redis.Redis`` or ``RedisCluster``.

    ``timeout_s`` bounds every socket read and connect (None: redis-py's default, no bound);
    ``health_check_interval``: redis-py's option (0: no ``PING`` before a call on an idle connection).
    A cluster client reads the slot map from a startup node now: :class:`OnlineStoreError` if none answers.
    """
    kwargs: dict[str, Any] = {}
    if timeout_s is not None:
        kwargs.update(socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    if health_check_interval is not None:
        kwargs["health_check_interval"] = health_check_interval
    if not is_cluster_url(url):  # redis://, rediss://, unix://: redis-py's own URL parsing, as always
        return redis.Redis.from_url(url, **kwargs)
    target = parse_redis_url(url)
    if target.ssl:
        kwargs["ssl"] = True
    if target.username is not None:
        kwargs["username"] = target.username
    if target.password is not None:
        kwargs["password"] = target.password
    try:
        return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in target.nodes], **kwargs)
    except redis.RedisError as exc:
        msg = f"no startup node of Redis Cluster {mask_url(url)!r} answered: {exc}"
        raise OnlineStoreError(msg) from exc


def is_cluster_url(url: str) -> bool:
    """``url`` names a Redis Cluster (``redis+cluster://`` or ``rediss+cluster://``)."""
    return url.partition("://")[0] in CLUSTER_SCHEMES


def is_cluster(client: object) -> bool:
    """``client`` is a ``RedisCluster``."""
    return isinstance(client, RedisCluster)


def decodes_responses(client: RedisClient) -> bool:
    """The client returns ``str`` instead of ``bytes`` (Feast's layout is binary: such a client cannot be used)."""
    return bool(client.get_encoder().decode_responses)
