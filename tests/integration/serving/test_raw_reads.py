"""The scorer's raw Redis reads against a real Redis: the same replies as redis-py, AUTH and SELECT, a pooled socket
that Redis closed is replaced without an error, and an unreachable Redis is a FeaturesUnavailableError naming it."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import redis

from slipstream.infra.config import PlatformConfig
from slipstream.infra.redis_local import LocalRedis
from slipstream.serving.exceptions import FeaturesUnavailableError
from slipstream.serving.online_state import PooledReads, RawReads, reads_for, scorer_client
from tests.conftest import Services
from tests.integration.serving.http_server import free_port

pytestmark = pytest.mark.integration


def test_replies_equal_redis_py(services: Services) -> None:
    client = scorer_client(services.redis_url)
    key = f"raw-{uuid.uuid4().hex}".encode()
    big = bytes(range(256)) * 400  # 100 KB: more than one receive buffer
    client.hset(key, mapping={b"a": b"1", b"big": big, b"empty": b""})
    try:
        raw = RawReads(client)
        commands = [(b"HGET", key, b"a"), (b"HGET", key, b"missing"), (b"HGET", key, b"big"), (b"HGET", key, b"empty")]
        assert raw.call(commands) == [client.hget(key, f) for _, _, f in commands] == [b"1", None, big, b""]
        assert raw.call([(b"HMGET", key, b"a", b"missing")]) == [[b"1", None]]
        # Redis closes every connection (as a restart would): the pooled socket is replaced, no error
        client.client_kill_filter(_type="normal", skipme=True)
        assert raw.call(commands[:1]) == [b"1"]
        with pytest.raises(FeaturesUnavailableError, match="WRONGTYPE|wrong kind"):
            raw.call([(b"GET", key)])  # a reply error is an error, never a value
        assert raw.call(commands[:1]) == [b"1"]  # and the connection stays usable
        raw.close()
    finally:
        client.delete(key)


def test_auth_and_database(tmp_path: Path) -> None:
    own = LocalRedis(PlatformConfig(state_dir=tmp_path / "redis", backend="local", redis_port=free_port()))
    own.up()
    try:
        admin = redis.Redis.from_url(own.config.redis_url)
        admin.config_set("requirepass", "s3cret")
        url = own.config.redis_url.replace("redis://", "redis://:s3cret@").rsplit("/", 1)[0] + "/3"
        client = scorer_client(url)
        client.set(b"k", b"in db 3")
        raw = RawReads(client)
        assert raw.call([(b"GET", b"k")]) == [b"in db 3"]
        wrong = scorer_client(url.replace("s3cret", "nope"))
        with pytest.raises(FeaturesUnavailableError, match="cannot be read"):
            RawReads(wrong).call([(b"GET", b"k")])
    finally:
        own.down()
    with pytest.raises(FeaturesUnavailableError, match="cannot be read: .*(Connection|refused|closed)"):
        raw.call([(b"GET", b"k")])  # its pooled socket is dead and a new one is refused


def test_pooled_reads_answer_the_same_and_tls_is_read_through_them(services: Services) -> None:
    client = scorer_client(services.redis_url)
    key = f"pooled-{uuid.uuid4().hex}".encode()
    client.hset(key, b"a", b"1")
    try:
        commands = [(b"HGET", key, b"a"), (b"HGET", key, b"missing")]
        pooled, raw = PooledReads(client), reads_for(client)
        assert isinstance(raw, RawReads)
        assert pooled.call(commands) == raw.call(commands) == [b"1", None]
        with pytest.raises(FeaturesUnavailableError, match="WRONGTYPE|wrong kind"):
            pooled.call([(b"GET", key)])
        pooled.close()
        raw.close()
    finally:
        client.delete(key)
    tls = redis.Redis(host="127.0.0.1", port=1, ssl=True)  # never connected: only which reader serves it
    assert isinstance(reads_for(tls), PooledReads)
