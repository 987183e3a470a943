"""A run's namespace on the shared broker and Redis: where its scorer group starts, whether the scorer joined, and
how everything the run created is deleted again — also for a run that was killed before it could clean up."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import redis
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from slipstream.app import Slipstream
from slipstream.demo.timeline import Namespace
from slipstream.schemas.transport.admin import members_holding_partitions


def start_group_at_end(bootstrap: str, group: str, topic: str) -> int:
    """Commit ``group``'s offsets at the end of ``topic``: a consumer of the group starts with what comes next."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False, "log_level": 3}
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = [
            TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1])
            for p in partitions
        ]
        consumer.commit(offsets=ends, asynchronous=False)
        return sum(tp.offset for tp in ends)
    finally:
        consumer.close()


def admin_client(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})  # errors only: info lines break the view


def group_assigned(admin: AdminClient, group: str) -> bool:
    """Some member of ``group`` holds partitions (the consumer joined and is reading)."""
    return members_holding_partitions(admin, group) > 0


def cleanup(app: Slipstream, ns: Namespace) -> int:
    """Delete the run's topics, its Redis keys and its consumer groups; return the Redis keys deleted."""
    app.topic_admin().delete(app.with_prefix(ns.prefix).catalog.full_names())
    client = redis.Redis.from_url(app.redis_url)
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"*{ns.project}".encode(), count=2000):
        batch.append(key)
        if len(batch) >= 2000:
            deleted += int(client.delete(*batch))
            batch = []
    if batch:
        deleted += int(client.delete(*batch))
    client.close()
    admin = admin_client(app.bootstrap_servers)
    with contextlib.suppress(Exception):  # best effort: group offsets also expire by themselves
        listed = admin.list_consumer_groups(request_timeout=5).result(timeout=10)
        groups = [g.group_id for g in listed.valid if ns.prefix in g.group_id]
        for future in admin.delete_consumer_groups(groups, request_timeout=5).values() if groups else ():
            with contextlib.suppress(Exception):
                future.result(timeout=10)
    return deleted


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunFiles:
    """``<state>/demo/runs/<run>.json`` while a run lives; one whose process is gone was killed before cleaning up."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir / "demo" / "runs"

    def claim(self, ns: Namespace) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"{ns.run_id}.json"
        path.write_text(json.dumps({"pid": os.getpid(), "prefix": ns.prefix, "project": ns.project}))
        return path

    def stale(self) -> list[tuple[Path, Namespace]]:
        out = []
        for path in sorted(self.dir.glob("*.json")) if self.dir.exists() else []:
            try:
                info = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if not _alive(int(info["pid"])):
                out.append((path, Namespace(path.stem, str(info["prefix"]), str(info["project"]))))
        return out
