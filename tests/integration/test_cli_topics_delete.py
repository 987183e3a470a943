"""`slipstream topics delete --prefix P`: lists what it will delete, refuses without a terminal unless --yes, deletes
exactly the topics under the prefix (and a Feast project's Redis keys when asked), and nothing beside them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
import redis

from slipstream.features.feast_layout import redis_key
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.topics import TopicCatalog, TopicSpec
from slipstream.schemas.transport import TopicAdmin
from tests.conftest import Services

pytestmark = pytest.mark.integration


def _cli(services: Services, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {
        "KAFKA_BOOTSTRAP_SERVERS": services.bootstrap_servers,
        "REDIS_URL": services.redis_url,
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "slipstream", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,  # no terminal to confirm on
    )


@pytest.fixture
def neighbour(services: Services, contracts: Contracts) -> Iterator[str]:
    """A topic whose name shares the start of the namespace's prefix but is not under it."""
    name = contracts.catalog.prefix.removesuffix(".") + "-other"
    admin = TopicAdmin(services.bootstrap_servers)
    admin.apply(TopicCatalog("", (TopicSpec(name, None, "key", partitions=1),)))
    yield name
    admin.delete([name])


def test_topics_delete_removes_the_namespace_and_nothing_else(
    services: Services, contracts: Contracts, neighbour: str
) -> None:
    prefix = contracts.catalog.prefix
    admin = TopicAdmin(services.bootstrap_servers)
    topics = admin.matching(prefix)
    assert f"{prefix}transactions" in topics
    project = f"p_{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(services.redis_url)
    ours = [redis_key(project, {"customer_id": i}) for i in range(25)]
    theirs = [redis_key(f"x_{project}", {"customer_id": i}) for i in range(5)]  # same suffix, another project
    for key in ours + theirs:
        client.hset(key, b"f", b"v")
    try:
        refused = _cli(services, "topics", "delete", "--prefix", prefix, "--redis-project", project)
        assert refused.returncode == 2, refused.stderr
        assert f"delete topic {prefix}transactions" in refused.stderr
        assert f"25 Redis keys of Feast project {project!r}" in refused.stderr
        assert refused.stderr.strip().splitlines()[-1].endswith("no terminal to ask on; pass --yes")
        assert admin.matching(prefix) == topics
        assert client.exists(*ours) == 25

        deleted = _cli(services, "topics", "delete", "--prefix", prefix, "--redis-project", project, "--yes", "--json")
        assert deleted.returncode == 0, deleted.stderr
        report = json.loads(deleted.stdout)
        assert report["topics"] == topics
        assert report["redis_keys"] == 25
        assert admin.matching(prefix) == []
        assert neighbour in admin.existing()
        assert client.exists(*ours) == 0
        assert client.exists(*theirs) == 5

        again = _cli(services, "topics", "delete", "--prefix", prefix, "--json")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["topics"] == []
    finally:
        client.delete(*ours, *theirs)
        client.close()
