"""The one place a Redis client is made: a standalone ``redis.Redis`` or a ``redis.cluster.RedisCluster``, chosen by
the URL.

* ``redis://[user:password@]host[:port][/db]`` (``rediss://`` for TLS): one Redis server, as before.
* ``redis+cluster://[user:password@]host:port[,host:port...][/0]`` (``rediss+cluster://``): a Redis Cluster; the
  hosts are startup nodes (any master or replica will do: the client asks ``CLUSTER SLOTS`` for the rest). A cluster
  has only database 0.

TLS (``rediss://``) verifies the server against the system's CAs, or against the CA file named by the query parameter
``ssl_ca_certs`` (a private CA); ``ssl_certfile`` and ``ssl_keyfile`` name a client certificate and its key (Redis
``tls-auth-clients yes``). These three are the only query parameters taken, only with TLS, and under redis-py's own
names, so the URL stays one self-contained value that every process (engine, scorer, Feast) is handed.
:func:`with_tls_files` adds them from the settings ``redis_tls_ca_file``, ``redis_tls_cert_file``,
``redis_tls_key_file``. An ACL user and password ride in the URL (``rediss://user:password@host:6380/0``).

A standalone client fails fast and says where: a refused login (wrong password, disabled user) or a TLS failure
(an unknown CA, a plain-text port) is raised at the first command, and every connection error's message starts with
``Redis at <the URL, password masked>:``; a connect (TLS handshake included) is bounded by :data:`CONNECT_TIMEOUT_S`
unless the caller bounds it tighter, so a TLS client on a plain-text port never hangs. A cluster client keeps
redis-py's cluster retries (a failover is ridden out) and its error messages.

The URL decides, not a probe of the server (``INFO cluster``): the choice is then visible in every setting and
status line, Feast's ``feature_store.yaml`` (``redis_type: redis_cluster``) is written without a round trip to a
server that may not be up yet, and a client is never silently of the other kind after a failover or a restart. A
standalone client pointed at a cluster node fails on the first write with a ``MOVED`` reply; the writer's error then
says to use ``redis+cluster://``.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import redis
from redis.backoff import EqualJitterBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

from slipstream.features.exceptions import OnlineStoreError
from slipstream.schemas.secrets import mask_url

if TYPE_CHECKING:
    from redis import Redis

__all__ = [
    "CLUSTER_SCHEMES",
    "CONNECT_TIMEOUT_S",
    "TLS_PARAMS",
    "RedisClient",
    "RedisTarget",
    "cluster_url",
    "decodes_responses",
    "is_cluster",
    "is_cluster_url",
    "parse_redis_url",
    "redis_client",
    "with_tls_files",
]

T = TypeVar("T")

RedisClient: TypeAlias = "Redis[bytes] | RedisCluster[bytes]"
CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}  # scheme -> TLS
_SCHEMES = {"redis": False, "rediss": True, **CLUSTER_SCHEMES}
TLS_PARAMS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")  # redis-py's names: CA, client certificate, its key
CONNECT_TIMEOUT_S = 5.0  # a connect and TLS handshake, when the caller gives no tighter bound


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """What a Redis URL names: one server or a cluster's startup nodes, and how to log in."""

    cluster: bool
    nodes: tuple[tuple[str, int], ...]
    db: int = 0
    ssl: bool = False
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


def _bad(url: str, why: str) -> OnlineStoreError:
    return OnlineStoreError(f"redis_url {mask_url(url)!r} {why}")


def _node(url: str, item: str) -> tuple[str, int]:
    host, sep, port = item.rpartition(":")
    if not sep:
        host, port = item, "6379"
    if not host or any(ch in host for ch in " []/") or not port.isdigit() or not 1 <= int(port) <= 65535:
        shown = f" {item!r}" if item in mask_url(url) else ""  # a malformed URL's "node" may be part of its password
        msg = f"names a node{shown} that is not host:port (IPv6 hosts are not supported)"
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
    if parts.fragment:
        raise _bad(url, "has a fragment (#...)")
    tls = _tls_params(url, parts.query, ssl=_SCHEMES[scheme])
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
        ca_file=tls.get("ssl_ca_certs"),
        cert_file=tls.get("ssl_certfile"),
        key_file=tls.get("ssl_keyfile"),
    )


def _tls_params(url: str, query: str, *, ssl: bool) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in TLS_PARAMS:
            msg = f"has query parameters other than {', '.join(TLS_PARAMS)} (taken with rediss://): {name!r}"
            raise _bad(url, msg)
        if not ssl:
            raise _bad(url, f"has {name} but is not TLS: use rediss://")
        if not value or name in params:
            raise _bad(url, f"has an empty or repeated {name}")
        params[name] = value
    if ("ssl_certfile" in params) != ("ssl_keyfile" in params):
        raise _bad(url, "has one of ssl_certfile and ssl_keyfile: a client certificate needs both")
    return params


def with_tls_files(
    url: str, ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None
) -> str:
    """``url`` with the TLS files as its query parameters (:data:`TLS_PARAMS`); ``url`` itself if none is given.
    :class:`OnlineStoreError` (URL masked) if ``url`` is not ``rediss://``/``rediss+cluster://`` or already names
    one of them."""
    given = [(n, v) for n, v in zip(TLS_PARAMS, (ca_file, cert_file, key_file), strict=True) if v is not None]
    if not given:
        return url
    joined = url + ("&" if urlsplit(url).query else "?") + "&".join(f"{n}={quote(v, safe='/')}" for n, v in given)
    parse_redis_url(joined)  # refuses plain redis://, one file of a pair, a file named twice
    return joined


def cluster_url(nodes: list[tuple[str, int]] | tuple[tuple[str, int], ...], *, ssl: bool = False) -> str:
    """``redis+cluster://h1:p1,h2:p2,...`` for a cluster's nodes."""
    return f"{'rediss' if ssl else 'redis'}+cluster://{','.join(f'{h}:{p}' for h, p in nodes)}"


def redis_client(url: str, *, timeout_s: float | None = None, health_check_interval: int | None = None) -> RedisClient:
    """A binary client (``decode_responses=False``) for ``url``: ``redis.Redis`` or ``RedisCluster``.

    ``timeout_s`` bounds every socket read and connect (None: reads unbounded, a connect and TLS handshake bounded by
    :data:`CONNECT_TIMEOUT_S`); ``health_check_interval``: redis-py's option (0: no ``PING`` before a call on an idle
    connection). A standalone client's connection errors name Redis and the URL (password masked) and are not
    retried (as redis-py's ``from_url`` clients); a cluster client keeps redis-py's cluster retries and reads the slot
    map from a startup node now: :class:`OnlineStoreError` if none answers.
    """
    where = mask_url(url)
    kwargs: dict[str, Any] = {"socket_connect_timeout": timeout_s if timeout_s is not None else CONNECT_TIMEOUT_S}
    if timeout_s is not None:
        kwargs["socket_timeout"] = timeout_s
    if health_check_interval is not None:
        kwargs["health_check_interval"] = health_check_interval
    if url.startswith("unix://"):  # redis-py's own URL parsing, as always
        return redis.Redis.from_url(url, retry=FailFastRetry(where), **kwargs)
    target = parse_redis_url(url)
    if target.username is not None:
        kwargs["username"] = target.username
    if target.password is not None:
        kwargs["password"] = target.password
    tls: dict[str, Any] = {
        "ssl_ca_certs": target.ca_file,
        "ssl_certfile": target.cert_file,
        "ssl_keyfile": target.key_file,
    }
    if not target.cluster:
        kwargs["retry"] = FailFastRetry(where)
        (host, port), db = target.nodes[0], target.db
        if not target.ssl:  # redis.Connection itself: the scorer's raw reads serve it (serving/online_state.py)
            return redis.Redis(host=host, port=port, db=db, **kwargs)
        kwargs.update(tls)
        pool = redis.ConnectionPool(connection_class=_TLSConnection, host=host, port=port, db=db, **kwargs)
        return redis.Redis(connection_pool=pool)
    if target.ssl:
        kwargs.update(ssl=True, **tls)
    try:
        return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in target.nodes], **kwargs)
    except redis.RedisError as exc:
        msg = f"no startup node of Redis Cluster {where!r} answered: {exc}"
        raise OnlineStoreError(msg) from exc


class TLSHandshakeError(redis.ConnectionError):
    """The TLS handshake did not finish: a wrong CA, a refused client certificate, or a port that is not TLS."""


class _TLSConnection(redis.SSLConnection):
    """redis-py's TLS connection with the handshake bounded by the connect timeout (redis-py bounds it by the read
    timeout, unbounded by default: a TLS client on a plain-text port waited forever) and its failure typed."""

    def _wrap_socket_with_ssl(self, sock: socket.socket) -> Any:
        sock.settimeout(self.socket_connect_timeout)
        try:
            wrapped = super()._wrap_socket_with_ssl(sock)  # type: ignore[misc]  # redis-py 7's; not in types-redis 4.6
        except TimeoutError as exc:
            msg = f"no TLS handshake within {self.socket_connect_timeout:g} s (is the port TLS?)"
            raise TLSHandshakeError(msg) from exc
        except ssl.SSLError as exc:
            msg = f"TLS handshake failed: {exc.reason or exc}"
            raise TLSHandshakeError(msg) from exc
        wrapped.settimeout(self.socket_timeout)
        return wrapped


def _fatal(error: Exception) -> bool:
    """A failure retrying cannot cure: a refused login or a failed TLS handshake."""
    if isinstance(error, redis.AuthenticationError | TLSHandshakeError):
        return True
    cause = error.__cause__ or error.__context__
    return isinstance(cause, ssl.SSLError) and not isinstance(cause, ssl.SSLEOFError | ssl.SSLZeroReturnError)


class FailFastRetry(Retry):
    """A connection's retry policy: ``retries`` retries of a connection error or timeout (exponential backoff with
    jitter from 1 s), none of a :func:`_fatal` failure; every connection failure's message is prefixed with
    ``Redis at <masked URL>:``, so a log line or a CLI error says which service and where. The factory's standalone
    clients take 0 retries, as redis-py's ``from_url`` clients always had here: the callers decide (the writer's
    batch retry, the scorer's 503 within ``redis_timeout_s``)."""

    def __init__(self, where: str, retries: int = 0) -> None:
        self._wait = EqualJitterBackoff(cap=10, base=1)
        super().__init__(self._wait, retries)
        self.where = where
        self.retries = retries

    def call_with_retry(
        self,
        do: Callable[[], T],
        fail: Callable[..., object],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        self._wait.reset()
        failures = 0
        while True:
            try:
                return do()
            except (TimeoutError, redis.ConnectionError, redis.TimeoutError) as error:
                failures += 1
                if with_failure_count:
                    fail(error, failures)
                else:
                    fail(error)
                if _fatal(error) or failures > self.retries or (is_retryable is not None and not is_retryable(error)):
                    self._annotate(error)
                    raise
                time.sleep(self._wait.compute(failures))

    def _annotate(self, exc: Exception) -> None:
        prefix = f"Redis at {self.where}: "
        text = str(exc)
        if text.startswith(prefix):
            return
        if isinstance(exc, redis.AuthenticationError):
            text = f"login refused ({text.rstrip('.')}): check the user and password in the URL"
        elif not self.where.startswith("rediss") and ("reset by peer" in text or "closed by server" in text):
            text += " (if this Redis takes TLS only, the URL must start with rediss://)"
        exc.args = (prefix + text,)


def is_cluster_url(url: str) -> bool:
    """``url`` names a Redis Cluster (``redis+cluster://`` or ``rediss+cluster://``)."""
    return url.partition("://")[0] in CLUSTER_SCHEMES


def is_cluster(client: object) -> bool:
    """``client`` is a ``RedisCluster``."""
    return isinstance(client, RedisCluster)


def decodes_responses(client: RedisClient) -> bool:
    """The client returns ``str`` instead of ``bytes`` (Feast's layout is binary: such a client cannot be used)."""
    return bool(client.get_encoder().decode_responses)
