"""The feature layer's integration tests use the suite's one real Redis (``services``), each module on a database
number of its own, so that flushing it between tests disturbs nobody else."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from tests.conftest import Services


def redis_db_url(services: Services, db: int) -> str:
    parts = urlsplit(services.redis_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", "", ""))
