"""The pure parts of Redis Cluster support: URLs, slot grouping, Feast's connection string, the platform's config."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.crc import key_slot

from slipstream.features.definitions import FRAUD
from slipstream.features.exceptions import DefinitionError, OnlineStoreError
from slipstream.features.feast_repo import FeastRepoConfig, redis_connection_string, view_layouts, write_repo
from slipstream.features.redis_client import cluster_url, is_cluster_url, parse_redis_url
from slipstream.features.redis_cluster import slot_calls, slot_groups
from slipstream.infra.config import PlatformConfig
from slipstream.infra.exceptions import InfraConfigError
from slipstream.infra.redis_cluster_local import node_command
from slipstream.schemas.secrets import mask_url


def test_cluster_urls_parse() -> None:
    target = parse_redis_url("redis+cluster://u:p%2Cw@10.0.0.1:7000,10.0.0.2:7001/0")
    assert target.cluster and not target.ssl
    assert target.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 7001))
    assert (target.username, target.password, target.db) == ("u", "p,w", 0)
    assert parse_redis_url("rediss+cluster://h").nodes == (("h", 6379),)
    assert parse_redis_url("rediss+cluster://h").ssl
    assert not parse_redis_url("redis://h:1/3").cluster
    assert is_cluster_url("redis+cluster://h:1") and not is_cluster_url("redis://h:1")
    assert cluster_url([("a", 1), ("b", 2)]) == "redis+cluster://a:1,b:2"


@pytest.mark.parametrize(
    ("url", "quoted"),
    [
        ("redis+cluster://h:1/2", "database other than 0"),
        ("redis://a:1,b:2/0", "redis+cluster://"),
        ("redis+cluster://h:port", "'h:port'"),
        ("redis+cluster://h:1?x=1", "query parameters"),
        ("memcached://h:1", "must start with"),
        ("redis+cluster://", "names no host"),
    ],
)
def test_bad_urls_name_the_value(url: str, quoted: str) -> None:
    with pytest.raises(OnlineStoreError, match=r"redis_url '") as info:
        parse_redis_url(url)
    assert quoted in str(info.value)


def test_passwords_are_hidden() -> None:
    assert mask_url("redis+cluster://me:secret@h:1,h:2") == "redis+cluster://me:***@h:1,h:2"
    with pytest.raises(OnlineStoreError) as info:
        parse_redis_url("redis+cluster://me:secret@h:1/5")
    assert "secret" not in str(info.value)


def test_slot_groups_keep_batch_order_per_slot() -> None:
    keys = [b"a", b"{a}x", b"b", b"a", b"{a}y"]  # a hash tag puts {a}x and {a}y in a's slot
    groups = slot_groups(keys)
    assert groups[key_slot(b"a")] == [0, 1, 3, 4]
    assert groups[key_slot(b"b")] == [2]


def test_slot_calls_pack_one_slot_per_call() -> None:
    layout = view_layouts([FRAUD], "p")["customer_spending"]
    items = [(layout.key({"customer_id": c % 50}), [b"f", str(c).encode()]) for c in range(200)]
    calls = slot_calls(items, per_call=3, head=[b"ttl"])
    seen: list[bytes] = []
    for slot, call in calls:
        n = call[0]
        keys = call[1 : 1 + n]
        assert 1 <= n <= 3 and {key_slot(k) for k in keys} == {slot}
        assert call[1 + n] == b"ttl" and len(call) == 2 + n + 2 * n
        seen += keys
    assert sorted(seen) == sorted(key for key, _ in items)
    # An entity's rows keep their batch order within its slot's calls.
    first = items[0][0]
    values = [
        call[2 + call[0] + 2 * i + 1] for _, call in calls for i, k in enumerate(call[1 : 1 + call[0]]) if k == first
    ]
    assert values == [b"0", b"50", b"100", b"150"]
    with pytest.raises(OnlineStoreError, match="per_call must be at least 1, got 0"):
        slot_calls(items, per_call=0)


def test_feast_sees_a_cluster(tmp_path: Path) -> None:
    url = "redis+cluster://u:pw@127.0.0.1:7100,127.0.0.1:7101"
    expected = '127.0.0.1:7100,127.0.0.1:7101,username="u",password="pw",socket_connect_timeout=5'
    assert redis_connection_string(url) == expected
    assert redis_connection_string("rediss+cluster://h:1") == "h:1,ssl=true,socket_connect_timeout=5,socket_timeout=5"
    config = FeastRepoConfig(repo_dir=tmp_path / "r", offline_dir=tmp_path / "o", redis_url=url)
    assert config.redis_type == "redis_cluster"
    yaml = (write_repo(config, [FRAUD]) / "feature_store.yaml").read_text()
    assert "  redis_type: redis_cluster\n" in yaml and "db=" not in yaml
    with pytest.raises(DefinitionError, match="database other than 0"):
        FeastRepoConfig(repo_dir=tmp_path, offline_dir=tmp_path, redis_url="redis+cluster://h:1/3")


def test_platform_config_names_the_cluster() -> None:
    config = PlatformConfig(redis_cluster=True, redis_cluster_port=17050, backend="local")
    assert config.redis_cluster_ports == (17050, 17051, 17052)
    assert config.redis_url == "redis+cluster://127.0.0.1:17050,127.0.0.1:17051,127.0.0.1:17052"
    assert config.redis_cluster_state_dir == Path(".slipstream/redis-cluster")
    assert PlatformConfig().redis_url == "redis://127.0.0.1:6379/0"
    with pytest.raises(InfraConfigError, match="redis_cluster_port 55534 leaves no room"):
        PlatformConfig(redis_cluster_port=55534)
    with pytest.raises(InfraConfigError, match="local backend"):
        PlatformConfig(redis_cluster=True, backend="docker")


def test_node_command_is_a_loopback_cluster_master(tmp_path: Path) -> None:
    cmd = node_command("/usr/bin/redis-server", 17050, tmp_path)
    args = dict(zip(cmd[1::2], cmd[2::2], strict=True))
    assert args["--cluster-enabled"] == "yes" and args["--bind"] == "127.0.0.1" and args["--port"] == "17050"
    assert args["--cluster-config-file"] == str(tmp_path / "nodes.conf") and args["--save"] == ""
