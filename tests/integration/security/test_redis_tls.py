"""Redis over TLS with an ACL login, end to end on a real redis-server (``tls_redis``): our writer and readers,
Feast's SDK, and the failures a deployment meets first (a wrong password, a plain-text client, an unknown CA),
each fast and in one line naming Redis, never quoting the password."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from slipstream.features.definitions import FRAUD
from slipstream.features.exceptions import OnlineStoreError
from slipstream.features.feast_repo import FeastRepoConfig, apply_repo, view_layouts
from slipstream.features.online_store import FeatureRow, RedisFeatureReader, RedisFeatureWriter
from slipstream.features.redis_client import TLSHandshakeError, redis_client
from slipstream.features.redis_keys import project_key_count
from slipstream.serving.online_state import scorer_client
from tests.integration.security.conftest import TLSRedis

pytestmark = pytest.mark.integration

PROJECT = "slipstream_tls_it"
CUSTOMER = FRAUD.view("customer_spending")
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LAYOUTS = view_layouts([FRAUD], PROJECT)


def _row(customer_id: int, base: float) -> FeatureRow:
    values = {name: base + i for i, name in enumerate(CUSTOMER.feature_names)}
    return FeatureRow(CUSTOMER.name, {"customer_id": customer_id}, values, T0)


def _with_password(tls: TLSRedis, password: str) -> str:
    return tls.url.replace(f":{tls.password}@", f":{password}@")


def test_writer_and_readers_round_trip_over_tls_and_acl(tls_redis: TLSRedis) -> None:
    report = RedisFeatureWriter.from_url(tls_redis.url, LAYOUTS.values()).write_batch([_row(1, 2.0), _row(2, 5.0)])
    assert (report.applied, report.rejected) == (2, ())
    reader = RedisFeatureReader.from_url(tls_redis.url, [LAYOUTS[CUSTOMER.name]])
    got = reader.read({"customer_id": 2})
    assert got is not None and dict(got.values) == {n: 5.0 + i for i, n in enumerate(CUSTOMER.feature_names)}
    assert reader.read({"customer_id": 99}) is None
    assert project_key_count(tls_redis.url, PROJECT) == 2  # SCAN, as `infra reset` and `verify` use it
    client = scorer_client(tls_redis.url)  # the scorer's bounded client: TLS goes through redis-py, not raw sockets
    assert client.ping()
    conn = client.connection_pool.get_connection()
    try:
        assert conn.connect_check_health is not None and conn._sock is not None
        assert conn._sock.version() == "TLSv1.3"
    finally:
        client.connection_pool.release(conn)


def test_feast_reads_a_row_over_tls(tls_redis: TLSRedis, tmp_path: Path) -> None:
    config = FeastRepoConfig(
        project=PROJECT, repo_dir=tmp_path / "repo", offline_dir=tmp_path / "offline", redis_url=tls_redis.url
    )
    store = apply_repo(config, [FRAUD])
    text = (config.repo_dir / "feature_store.yaml").read_text()
    assert "ssl=true" in text and f'ssl_ca_certs=\\"{tls_redis.ca_file}\\"' in text
    RedisFeatureWriter.from_url(tls_redis.url, LAYOUTS.values()).write_batch([_row(7, 3.0)])
    got = store.get_online_features(
        features=[f"{CUSTOMER.name}:{n}" for n in CUSTOMER.feature_names], entity_rows=[{"customer_id": 7}]
    ).to_dict()
    assert got == {"customer_id": [7], **{n: [3.0 + i] for i, n in enumerate(CUSTOMER.feature_names)}}


def test_a_wrong_password_fails_fast_in_one_line(tls_redis: TLSRedis) -> None:
    wrong = "Wr0ngPassw0rdNotTheRealOne"
    started = time.monotonic()
    with pytest.raises(OnlineStoreError) as info:  # the reader's error, chaining redis-py's AuthenticationError
        RedisFeatureReader.from_url(_with_password(tls_redis, wrong), [LAYOUTS[CUSTOMER.name]]).read({"customer_id": 1})
    elapsed = time.monotonic() - started
    message = str(info.value)
    assert elapsed < 5.0, elapsed
    assert "\n" not in message and "Redis at rediss://slipstream:***@127.0.0.1:17201/0?ssl_ca_certs=" in message
    assert "login refused" in message and isinstance(info.value.__cause__, redis.AuthenticationError)
    assert wrong not in message and tls_redis.password not in message


def test_no_login_is_refused_the_default_user_is_off(tls_redis: TLSRedis) -> None:
    url = tls_redis.url.replace(f"slipstream:{tls_redis.password}@", "")
    with pytest.raises(redis.AuthenticationError, match="login refused"):
        redis_client(url).ping()


def test_an_unknown_ca_fails_fast_naming_tls(tls_redis: TLSRedis) -> None:
    url = tls_redis.url.partition("?")[0]  # the system's CAs do not know the local CA
    started = time.monotonic()
    with pytest.raises(TLSHandshakeError, match=r"^Redis at rediss://slipstream:\*\*\*@.*CERTIFICATE_VERIFY_FAILED"):
        redis_client(url).ping()
    assert time.monotonic() - started < 5.0


def test_a_plain_text_client_is_refused_clearly(tls_redis: TLSRedis) -> None:
    url = tls_redis.url.partition("?")[0].replace("rediss://", "redis://")
    with pytest.raises(redis.ConnectionError) as info:
        redis_client(url, timeout_s=1.0).ping()  # no plain-text port: Redis drops the connection (after retries)
    message = str(info.value)
    assert message.startswith("Redis at redis://slipstream:***@127.0.0.1:17201/0: ")
    assert "rediss://" in message and tls_redis.password not in message
