"""A Feast project's keys in the online store: recognise them, count them, delete them — on one Redis or a cluster.

On a Redis Cluster ``SCAN`` runs on every master (redis-py's ``RedisCluster.scan_iter``) and ``DEL`` is split by
slot, so the same code counts and deletes a project's keys on either.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import redis

from slipstream.features.exceptions import OnlineStoreError
from slipstream.features.redis_client import RedisClient, redis_client
from slipstream.schemas.secrets import mask_url

__all__ = ["key_project", "project_key_count", "project_keys"]

_MAX_JOIN_KEYS = 64  # far beyond any entity: a "key" claiming more is not a Feast key


def key_project(key: bytes) -> bytes | None:
    """The project a Feast Redis key belongs to (the bytes after its serialized entity key, see
    ``slipstream.features.feast_layout``), or ``None`` when ``key`` is not a Feast key."""
    try:
        (n,) = struct.unpack_from("<I", key, 0)
        if not 0 < n <= _MAX_JOIN_KEYS:
            return None
        pos = 4
        for _ in range(2 * n):  # the join key names, then their values: <I type><I length><bytes> each
            _kind, length = struct.unpack_from("<II", key, pos)
            pos += 8 + length
    except struct.error:
        return None
    return key[pos:] if pos < len(key) else None


def project_keys(client: RedisClient, project: str) -> Iterator[list[bytes]]:
    """The Redis keys of Feast project ``project``, in batches, by SCAN (never KEYS; on every master of a cluster);
    matched exactly, so project ``a_b`` never takes the keys of project ``x_a_b``."""
    suffix = project.encode()
    batch: list[bytes] = []
    for key in client.scan_iter(match=b"*" + suffix, count=2000):
        if key_project(key) == suffix:
            batch.append(key)
        if len(batch) >= 2000:
            yield batch
            batch = []
    if batch:
        yield batch


def project_key_count(redis_url: str, project: str, *, delete: bool = False) -> int:
    """How many Redis keys Feast project ``project`` has; with ``delete``, delete them and return how many went.
    ``redis_url``: any form :func:`slipstream.features.redis_client.redis_client` takes."""
    client = redis_client(redis_url)
    try:
        if delete:
            return sum(int(client.delete(*batch)) for batch in project_keys(client, project))
        return sum(len(batch) for batch in project_keys(client, project))
    except redis.RedisError as exc:
        what = "delete" if delete else "count"
        msg = f"cannot {what} the keys of Feast project {project!r} in Redis at {mask_url(redis_url)!r}: {exc}"
        raise OnlineStoreError(msg) from exc
    finally:
        client.close()
