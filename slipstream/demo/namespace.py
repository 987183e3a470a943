"""A run's namespace on the shared broker and Redis: where its scorer group starts, whether the scorer joined, and
how everything the run created is deleted again — also for a run that was killed before it could clean up."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from slipstream.app import Slipstream
from slipstream.demo.timeline import Namespace
from slipstream.features.online_store import project_key_count
from slipstream.schemas.exceptions import SlipstreamError
from slipstream.schemas.transport.admin import members_holding_partitions
from slipstream.schemas.transport.connection import KafkaLike, kafka_config


def start_group_at_end(bootstrap: KafkaLike, group: str, topic: str) -> int:
    """Commit ``group``'s offsets at the end of ``topic``: a consumer of the group starts with what comes next."""
    consumer = Consumer({**kafka_config(bootstrap), "group.id": group, "enable.auto.commit": False, "log_level": 3})
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


def admin_client(bootstrap: KafkaLike) -> AdminClient:
    return AdminClient({**kafka_config(bootstrap), "log_level": 3})  # errors only: info lines break the view


def group_assigned(admin: AdminClient, group: str) -> bool:
    """Some member of ``group`` holds partitions (the consumer joined and is reading)."""
    return members_holding_partitions(admin, group) > 0


def cleanup(app: Slipstream, ns: Namespace) -> int:
    """Delete the run's topics, its Redis keys and its consumer groups; return the Redis keys deleted."""
    admin = app.topic_admin()
    admin.delete_prefix(ns.prefix)  # the contract topics and the engine's own
    deleted = project_key_count(app.redis_url, ns.project, delete=True)
    with contextlib.suppress(SlipstreamError):  # best effort: group offsets also expire by themselves
        admin.delete_groups(admin.groups(ns.prefix), patience_s=0)
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
