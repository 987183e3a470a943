"""The scorer's read path: each entity's window state from the online store, in one pipelined round trip.

The engine writes an entity's :class:`~features.windows.EntityState` into the same Redis hash as its Feast feature
row (field ``_state:<view>``; see ``docs/feast-redis-layout.md``), so the scorer reads the events behind the
features with no more round trips than reading the features would take, and no Feast SDK on the hot path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import redis

from features.feast_layout import JoinKeyValue, ViewLayout
from serving.exceptions import FeaturesUnavailableError

if TYPE_CHECKING:
    from redis import Redis


def unavailable(exc: Exception) -> FeaturesUnavailableError:
    """The error every scorer read raises when Redis fails (HTTP 503), naming what went wrong."""
    return FeaturesUnavailableError(f"the online store (Redis) cannot be read: {type(exc).__name__}: {exc}")


def scorer_client(url: str, timeout_s: float = 0.25) -> Redis[bytes]:
    """A binary Redis client whose every call is bounded by ``timeout_s``: a hung Redis is a fast 503, not a wait."""
    return redis.Redis.from_url(
        url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, health_check_interval=0
    )


def check_binary(client: Redis[bytes]) -> None:
    if client.connection_pool.connection_kwargs.get("decode_responses"):
        msg = f"{client!r} decodes responses; Feast's layout is binary, create it with decode_responses=False"
        raise FeaturesUnavailableError(msg)


def answers(client: Redis[bytes]) -> bool:
    """Redis answers a PING (readiness)."""
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


class RedisStateStore:
    """:class:`~serving.base.StateStore` on Redis. ``timeout_s`` bounds every read: a hung Redis is an error, fast."""

    def __init__(self, client: Redis[bytes], layouts: Iterable[ViewLayout]) -> None:
        check_binary(client)
        self._client = client
        self._layouts = {layout.view: layout for layout in layouts}

    @classmethod
    def from_url(cls, url: str, layouts: Iterable[ViewLayout], *, timeout_s: float = 0.25) -> RedisStateStore:
        return cls(scorer_client(url, timeout_s), layouts)

    @property
    def client(self) -> Redis[bytes]:
        return self._client

    def read_states(self, keys: Sequence[tuple[str, Mapping[str, JoinKeyValue]]]) -> list[bytes | None]:
        """One write of every ``HGET`` and one read of the replies on a pooled connection.

        redis-py's ``Pipeline`` object costs ~90 µs of Python per call on this path (measured: 150 vs 65 µs for two
        ``HGET``s at 1,000 calls/s); the raw connection API does the same round trip without it.
        """
        layouts = self._layouts
        commands = []
        for view, join_keys in keys:
            layout = layouts[view]
            commands.append((b"HGET", layout.key(join_keys), layout.state_field))
        pool = self._client.connection_pool
        try:
            conn = pool.get_connection()
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
        try:
            conn.send_packed_command(conn.pack_commands(commands), check_health=False)
            replies: list[bytes | None] = [conn.read_response() for _ in commands]
        except (redis.RedisError, OSError) as exc:
            conn.disconnect()  # replies may be left unread on it: never reuse it as is
            raise unavailable(exc) from exc
        finally:
            pool.release(conn)
        return replies

    def ping(self) -> bool:
        return answers(self._client)
