"""The pure parts of Redis TLS: URL forms, the settings that feed them, the retry policy's verdicts and the local
launcher's redis-server arguments. The real TLS server is in tests/integration/security."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import redis

from slipstream.app import Slipstream
from slipstream.exceptions import ConfigError
from slipstream.features.exceptions import OnlineStoreError
from slipstream.features.redis_client import (
    FailFastRetry,
    TLSHandshakeError,
    parse_redis_url,
    redis_client,
    with_tls_files,
)
from slipstream.infra.config import PlatformConfig
from slipstream.infra.exceptions import InfraConfigError
from slipstream.infra.redis_local import redis_command
from slipstream.infra.redis_tls import local_tls_url, tls_files
from slipstream.settings import load_settings

PASSWORD = "S3cretNeverPrinted"  # noqa: S105  # a test value, asserted never to be printed


def test_tls_files_ride_in_the_url() -> None:
    url = with_tls_files(f"rediss://app:{PASSWORD}@cache:6380/2", "/etc/ca dir/ca.crt", "/c.crt", "/c.key")
    assert url == (
        f"rediss://app:{PASSWORD}@cache:6380/2?ssl_ca_certs=/etc/ca%20dir/ca.crt&ssl_certfile=/c.crt&ssl_keyfile=/c.key"
    )
    target = parse_redis_url(url)
    assert (target.ssl, target.username, target.password, target.db) == (True, "app", PASSWORD, 2)
    assert (target.ca_file, target.cert_file, target.key_file) == ("/etc/ca dir/ca.crt", "/c.crt", "/c.key")
    assert with_tls_files("rediss://h:1/0") == "rediss://h:1/0"
    cluster = parse_redis_url(with_tls_files("rediss+cluster://h:1,h:2", "/ca.crt"))
    assert (cluster.cluster, cluster.ca_file, cluster.nodes) == (True, "/ca.crt", (("h", 1), ("h", 2)))


@pytest.mark.parametrize(
    ("url", "why"),
    [
        (f"redis://u:{PASSWORD}@h:1/0?ssl_ca_certs=/ca.crt", "is not TLS: use rediss://"),
        (f"rediss://u:{PASSWORD}@h:1/0?ssl_certfile=/c.crt", "a client certificate needs both"),
        (f"rediss://u:{PASSWORD}@h:1/0?ssl_ca_certs=/a&ssl_ca_certs=/b", "empty or repeated ssl_ca_certs"),
        (f"rediss://u:{PASSWORD}@h:1/0?socket_timeout=1", "query parameters other than"),
    ],
)
def test_bad_tls_urls_are_refused_masked(url: str, why: str) -> None:
    with pytest.raises(OnlineStoreError, match=why) as info:
        parse_redis_url(url)
    assert PASSWORD not in str(info.value)


def test_clients_get_bounded_connects_and_the_fail_fast_retry() -> None:
    plain = redis_client(f"redis://u:{PASSWORD}@127.0.0.1:1/0")
    kwargs = plain.connection_pool.connection_kwargs
    assert plain.connection_pool.connection_class is redis.Connection  # the scorer's raw reads still serve it
    assert kwargs["socket_connect_timeout"] == 5.0 and kwargs.get("socket_timeout") is None  # reads as before
    assert isinstance(kwargs["retry"], FailFastRetry) and PASSWORD not in kwargs["retry"].where
    tls = redis_client("rediss://u:p@127.0.0.1:1/0?ssl_ca_certs=/ca.crt", timeout_s=0.25)
    assert issubclass(tls.connection_pool.connection_class, redis.SSLConnection)
    assert tls.connection_pool.connection_kwargs["ssl_ca_certs"] == "/ca.crt"


def test_the_retry_gives_up_at_once_on_a_login_or_tls_failure() -> None:
    calls: list[int] = []

    def fails(error: Exception) -> None:
        calls.append(1)
        raise error

    for error in (redis.AuthenticationError("invalid password"), TLSHandshakeError("TLS handshake failed")):
        calls.clear()
        retry = FailFastRetry("rediss://u:***@h:1/0")
        with pytest.raises(type(error)) as info:
            retry.call_with_retry(lambda error=error: fails(error), lambda _e: None)
        assert calls == [1] and str(info.value).startswith("Redis at rediss://u:***@h:1/0: ")
    calls.clear()
    with pytest.raises(
        redis.ConnectionError, match="^Redis at redis://h:1/0: Connection closed by server. .*rediss://"
    ):
        FailFastRetry("redis://h:1/0").call_with_retry(
            lambda: fails(redis.ConnectionError("Connection closed by server.")), lambda _e: None
        )
    assert calls == [1]  # the factory's clients: no retries, as redis-py's from_url clients
    wrapped = redis.ConnectionError("Error 1 connecting")
    wrapped.__context__ = ssl.SSLCertVerificationError("certificate verify failed")
    with pytest.raises(redis.ConnectionError):
        FailFastRetry("rediss://h:1/0").call_with_retry(lambda: fails(wrapped), lambda _e: None)


def test_settings_tls_files_need_a_tls_url_and_come_in_pairs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="need a TLS Redis"):
        load_settings(redis_url=f"redis://u:{PASSWORD}@h:1/0", redis_tls_ca_file=tmp_path / "ca.crt")
    with pytest.raises(ConfigError, match="go together") as info:
        load_settings(redis_url=f"rediss://u:{PASSWORD}@h:1/0", redis_tls_cert_file=tmp_path / "c.crt")
    assert PASSWORD not in str(info.value)
    settings = load_settings(redis_url=f"rediss://u:{PASSWORD}@h:1/0", redis_tls_ca_file=Path("/etc/ca.crt"))
    assert Slipstream(settings).redis_url == f"rediss://u:{PASSWORD}@h:1/0?ssl_ca_certs=/etc/ca.crt"
    assert PASSWORD not in repr(settings)


def test_the_local_tls_redis_listens_on_tls_only_with_the_acl_file(tmp_path: Path) -> None:
    config = PlatformConfig(state_dir=tmp_path, backend="local", redis_port=6390, redis_tls=True)
    files = tls_files(config)
    cmd = redis_command("redis-server", config, str(tmp_path))
    assert cmd[cmd.index("--port") + 1] == "0" and cmd[cmd.index("--tls-port") + 1] == "6390"
    assert cmd[cmd.index("--aclfile") + 1] == str(files.acl_file)
    assert cmd[cmd.index("--bind") + 1] == "127.0.0.1"
    assert config.redis_url == "rediss://127.0.0.1:6390/0"  # no password: only the state dir holds it
    assert local_tls_url(config) == f"rediss://slipstream@127.0.0.1:6390/0?ssl_ca_certs={files.ca_cert}"
    plain = PlatformConfig(state_dir=tmp_path, backend="local", redis_port=6390)
    assert "--tls-port" not in redis_command("redis-server", plain, str(tmp_path))  # the default is unchanged
    with pytest.raises(InfraConfigError, match="redis_tls needs the local backend"):
        PlatformConfig(backend="docker", redis_tls=True)
    with pytest.raises(InfraConfigError, match="not redis_cluster"):
        PlatformConfig(backend="local", redis_tls=True, redis_cluster=True)
