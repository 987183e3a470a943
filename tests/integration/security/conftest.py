"""A TLS + ACL redis-server of the suite's own, started by the launcher (``infra up --redis-tls``'s code) on port
17201, away from the shared services (16379) and the cluster tests (17050+)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from slipstream.infra.config import PlatformConfig
from slipstream.infra.redis_local import LocalRedis
from slipstream.infra.redis_tls import local_tls_url, tls_files

TLS_PORT = 17201


@dataclass(frozen=True)
class TLSRedis:
    url: str  # rediss://slipstream:<password>@127.0.0.1:17201/0?ssl_ca_certs=...
    password: str
    ca_file: Path
    port: int = TLS_PORT


@pytest.fixture(scope="package")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSRedis]:
    config = PlatformConfig(
        state_dir=tmp_path_factory.mktemp("tls-platform"), backend="local", redis_port=TLS_PORT, redis_tls=True
    )
    server = LocalRedis(config)
    status = server.up()
    assert status.up, status
    files = tls_files(config)
    try:
        yield TLSRedis(local_tls_url(config), files.password_file.read_text().strip(), files.ca_cert)
    finally:
        server.down()
