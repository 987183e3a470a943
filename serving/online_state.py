"""The scorer's read path: each entity's window state from the online store, in one pipelined round trip.

The engine writes an entity's :class:`~features.windows.EntityState` into the same Redis hash as its Feast feature
row (field ``_state:<view>``; see ``docs/feast-redis-layout.md``), so the scorer reads the events behind the
features with no more round trips than reading the features would take, and no Feast SDK on the hot path.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import hiredis
import redis
from redis.cluster import RedisCluster

from slipstream.features.exceptions import OnlineStoreError
from slipstream.features.feast_layout import JoinKeyValue, ViewLayout
from slipstream.features.redis_client import RedisClient, decodes_responses, redis_client
from slipstream.serving.exceptions import FeaturesUnavailableError

if TYPE_CHECKING:
    from redis import Redis

    from slipstream.serving.cluster_reads import ClusterPipelineReads, ClusterReads


def unavailable(exc: Exception) -> FeaturesUnavailableError:
    """The error every scorer read raises when Redis fails (HTTP 503), naming what went wrong."""
    return FeaturesUnavailableError(f"the online store (Redis) cannot be read: {type(exc).__name__}: {exc}")


def scorer_client(url: str, timeout_s: float = 0.25) -> RedisClient:
    """A binary Redis client whose every call is bounded by ``timeout_s``: a hung Redis is a fast 503, not a wait.

    ``url``: one Redis or a Redis Cluster (``redis+cluster://...``, see :mod:`slipstream.features.redis_client`)."""
    try:
        return redis_client(url, timeout_s=timeout_s, health_check_interval=0)
    except OnlineStoreError as exc:  # a cluster client reads the slot map now
        raise unavailable(exc) from exc


def check_binary(client: RedisClient) -> None:
    if decodes_responses(client):
        msg = f"{client!r} decodes responses; Feast's layout is binary, create it with decode_responses=False"
        raise FeaturesUnavailableError(msg)


def answers(client: RedisClient) -> bool:
    """Redis answers a PING (readiness)."""
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


class RawReads:
    """Pipelined reads on plain sockets with hiredis's parser: the hot path's whole Redis client.

    redis-py's connection objects cost ~30 µs of Python per call here (pool checkout, health and timeout bookkeeping,
    a parser wrapper per reply); a call on this path is one ``sendall`` and ``recv_into`` until every reply is parsed.
    Sockets are pooled (a list: ``pop``/``append`` are atomic), so threads may share it. Connection settings (host and
    port or Unix socket, AUTH, SELECT, timeout) come from the redis-py client's; a TLS Redis is read through
    :class:`PooledReads` instead (see :func:`reads_for`).
    """

    @staticmethod
    def supports(client: Redis[bytes]) -> bool:
        return client.connection_pool.connection_class in (redis.Connection, redis.UnixDomainSocketConnection)

    def __init__(self, client: Redis[bytes]) -> None:
        kwargs: dict[str, Any] = dict(client.connection_pool.connection_kwargs)
        if not self.supports(client):
            msg = f"raw reads need a plain TCP or Unix-socket Redis, got {client.connection_pool!r}"
            raise FeaturesUnavailableError(msg)
        self._path: str | None = kwargs.get("path")
        self._address = (str(kwargs.get("host", "localhost")), int(kwargs.get("port", 6379)))
        self._timeout: float | None = kwargs.get("socket_timeout")
        self._connect_timeout: float | None = kwargs.get("socket_connect_timeout") or self._timeout
        self._hello: list[tuple[bytes, ...]] = []
        if kwargs.get("password") is not None:
            user = kwargs.get("username")
            auth = (b"AUTH", *([str(user).encode()] if user else []), str(kwargs["password"]).encode())
            self._hello.append(auth)
        if int(kwargs.get("db") or 0):
            self._hello.append((b"SELECT", str(kwargs["db"]).encode()))
        self._idle: list[_Conn] = []

    def call(self, commands: Sequence[tuple[bytes, ...]]) -> list[Any]:
        """Send ``commands`` in one write; their replies, in order. Raises :class:`FeaturesUnavailableError`."""
        payload = b"".join(pack(command) for command in commands)  # before a socket is taken: a bad argument loses none
        try:
            conn: _Conn | None = self._idle.pop()
        except IndexError:
            conn = None
        pooled = conn is not None
        try:
            try:
                if conn is None:
                    conn = self._connect()
                replies = self._roundtrip(conn, payload, len(commands))
            except ConnectionError:  # not a timeout: a hung Redis gets no second wait
                if not pooled or conn is None:
                    raise
                conn[0].close()  # a pooled socket Redis closed meanwhile (a restart): reads are safe to send again
                conn = None
                conn = self._connect()
                replies = self._roundtrip(conn, payload, len(commands))
        except (OSError, redis.RedisError, hiredis.ProtocolError) as exc:
            if conn is not None:
                conn[0].close()  # replies may be left unread on it: never reuse it
            raise unavailable(exc) from exc
        self._idle.append(conn)
        for reply in replies:
            if isinstance(reply, hiredis.ReplyError):
                raise unavailable(redis.ResponseError(str(reply)))
        return replies

    def checkout(self) -> tuple[_Conn, bool]:
        """An idle pooled socket (and True), or a new one (and False); :meth:`checkin` it after a full read."""
        try:
            return self._idle.pop(), True
        except IndexError:
            return self._connect(), False

    def checkin(self, conn: _Conn) -> None:
        self._idle.append(conn)

    @staticmethod
    def _roundtrip(conn: _Conn, payload: bytes, n_replies: int) -> list[Any]:
        conn[0].sendall(payload)
        return RawReads.receive(conn, n_replies)

    @staticmethod
    def receive(conn: _Conn, n_replies: int) -> list[Any]:
        """Read ``n_replies`` replies from ``conn`` (error replies as ``hiredis.ReplyError``)."""
        sock, buffer = conn
        reader = hiredis.Reader()
        replies: list[Any] = []
        while len(replies) < n_replies:
            reply = reader.gets()
            if reply is False:
                n = sock.recv_into(buffer)
                if n == 0:
                    msg = "Redis closed the connection"
                    raise ConnectionError(msg)
                reader.feed(buffer, 0, n)  # type: ignore[arg-type]  # takes any buffer; the stub says bytes
                continue
            replies.append(reply)
        return replies

    def _connect(self) -> _Conn:
        if self._path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(self._connect_timeout)
                sock.connect(self._path)
            except BaseException:
                sock.close()
                raise
        else:
            sock = socket.create_connection(self._address, timeout=self._connect_timeout)  # closes it if it fails
        try:
            if self._path is None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(self._timeout)
            conn = (sock, bytearray(1 << 16))  # the socket's own receive buffer (hiredis copies what it is fed)
            if self._hello:
                hello = b"".join(pack(command) for command in self._hello)
                for reply in self._roundtrip(conn, hello, len(self._hello)):
                    if isinstance(reply, hiredis.ReplyError):
                        raise redis.AuthenticationError(str(reply))
        except BaseException:
            sock.close()
            raise
        return conn

    def close(self) -> None:
        while self._idle:
            self._idle.pop()[0].close()


_Conn = tuple[socket.socket, bytearray]


def pack(command: tuple[bytes, ...]) -> bytes:
    parts = [b"*%d\r\n" % len(command)]
    for arg in command:
        parts.append(b"$%d\r\n%b\r\n" % (len(arg), arg))
    return b"".join(parts)


class PooledReads:
    """The same calls through redis-py's connection pool (packed commands, no ``Pipeline`` object): for a Redis
    :class:`RawReads` does not speak to (TLS)."""

    def __init__(self, client: Redis[bytes]) -> None:
        self._client = client

    def call(self, commands: Sequence[tuple[bytes, ...]]) -> list[Any]:
        pool = self._client.connection_pool
        try:
            conn = pool.get_connection()
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
        try:
            conn.send_packed_command(conn.pack_commands(commands), check_health=False)
            return [conn.read_response() for _ in commands]
        except (redis.RedisError, OSError) as exc:
            conn.disconnect()  # replies may be left unread on it: never reuse it as is
            raise unavailable(exc) from exc
        finally:
            pool.release(conn)

    def close(self) -> None:
        self._client.connection_pool.disconnect()


def reads_for(client: RedisClient) -> RawReads | PooledReads | ClusterReads | ClusterPipelineReads:
    """The fastest reader that speaks to ``client``'s Redis (or Redis Cluster: by slot to each master)."""
    if isinstance(client, RedisCluster):
        from slipstream.serving.cluster_reads import cluster_reads_for

        return cluster_reads_for(client)
    return RawReads(client) if RawReads.supports(client) else PooledReads(client)


class RedisStateStore:
    """:class:`~serving.base.StateStore` on Redis. ``timeout_s`` bounds every read: a hung Redis is an error, fast."""

    def __init__(self, client: RedisClient, layouts: Iterable[ViewLayout]) -> None:
        check_binary(client)
        self._client = client
        self._reads = reads_for(client)
        self._layouts = {layout.view: layout for layout in layouts}

    @classmethod
    def from_url(cls, url: str, layouts: Iterable[ViewLayout], *, timeout_s: float = 0.25) -> RedisStateStore:
        return cls(scorer_client(url, timeout_s), layouts)

    @property
    def client(self) -> RedisClient:
        return self._client

    def read_states(self, keys: Sequence[tuple[str, Mapping[str, JoinKeyValue]]]) -> list[bytes | None]:
        """Every ``HGET`` in one write, the replies in one read (see :func:`reads_for`)."""
        layouts = self._layouts
        commands = []
        for view, join_keys in keys:
            layout = layouts[view]
            commands.append((b"HGET", layout.key(join_keys), layout.state_field))
        replies: list[bytes | None] = self._reads.call(commands)
        return replies

    def ping(self) -> bool:
        return answers(self._client)

    def close(self) -> None:
        self._reads.close()
