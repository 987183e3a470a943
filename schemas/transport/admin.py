"""Topics as code: make the broker match the declarations, idempotently. Also: who in a consumer group reads."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from slipstream.schemas.exceptions import TopicError
from slipstream.schemas.topics import TopicCatalog, TopicSpec, validate_prefix
from slipstream.schemas.transport.connection import KafkaLike, kafka_config, list_topics

Action = Literal["created", "updated", "unchanged"]

MAX_REPLICATION_FACTOR = 3
# With 3 replicas, an acks=all write is on at least 2 brokers before it is acknowledged, and the topic keeps taking
# writes while one broker is down.
DURABLE_MIN_INSYNC_REPLICAS = "2"


def replication_factor_for(brokers: int) -> int:
    """The replication factor of new topics on a cluster of ``brokers`` live brokers: ``min(3, brokers)``."""
    return max(1, min(MAX_REPLICATION_FACTOR, brokers))


def durability_config(replication_factor: int) -> dict[str, str]:
    """Topic configs that go with ``replication_factor``: ``min.insync.replicas`` 2 from 3 replicas up, else none
    (the broker's default, 1, is all one or two replicas can keep while one of them is down)."""
    if replication_factor >= MAX_REPLICATION_FACTOR:
        return {"min.insync.replicas": DURABLE_MIN_INSYNC_REPLICAS}
    return {}


@dataclass(frozen=True, slots=True)
class TopicChange:
    topic: str
    action: Action
    detail: str = ""


class TopicAdmin:
    """Creates missing topics, grows partitions and aligns configs; never deletes or shrinks on its own (deleting
    is asked for by name or by prefix: :meth:`delete`, :meth:`delete_prefix`).

    ``replication_factor`` None (the default) asks the cluster: new topics get ``min(3, live brokers)`` replicas
    (1 on the single local broker, 3 on a 3-node cluster), and a topic with 3 or more replicas gets
    ``min.insync.replicas`` 2, on creation and when :meth:`apply` aligns an existing one. A topic created while
    a node of a 3-node cluster is down gets 2 replicas; an existing topic's replication factor is never changed.
    """

    def __init__(
        self, bootstrap_servers: KafkaLike, *, replication_factor: int | None = None, timeout_s: float = 30.0
    ) -> None:
        # log_level 4 (warning): librdkafka prints an info line ("Purging 1 unserved events") at every close.
        self._admin = AdminClient({**kafka_config(bootstrap_servers), "log_level": 4})
        self._rf = replication_factor
        self._timeout = timeout_s

    def _metadata(self) -> Any:
        """The cluster's metadata, asked in slices of 0.5 s with the client's callbacks served between them: a
        refused login or TLS handshake raises :class:`KafkaAccessError` within a second, not after the timeout."""
        try:
            return list_topics(self._admin, self._timeout)
        except KafkaException as exc:
            msg = f"cannot list topics: {exc}"
            raise TopicError(msg) from exc

    def _topics(self) -> dict[str, Any]:
        """The broker's topic metadata by name."""
        return dict(self._metadata().topics)

    @property
    def replication_factor(self) -> int:
        """Replicas of the topics this admin creates: as given, else ``min(3, live brokers)`` (asked once)."""
        if self._rf is None:
            self._rf = replication_factor_for(len(self._metadata().brokers))
        return self._rf

    def existing(self) -> dict[str, int]:
        """Topic name -> partition count, for every topic on the broker."""
        return {name: len(t.partitions) for name, t in self._topics().items() if t.error is None}

    def _wait(self, pending: Callable[[], list[str]], problem: str) -> None:
        """Poll until ``pending()`` is empty; after the timeout, a :class:`TopicError` naming what is left."""
        deadline = time.monotonic() + self._timeout
        while left := pending():
            if time.monotonic() > deadline:
                msg = f"topics {left[:5]} {problem} after {self._timeout:g} s"
                raise TopicError(msg)
            time.sleep(0.05)

    def apply(self, catalog: TopicCatalog) -> list[TopicChange]:
        metadata = self._metadata()  # one request: the topics, their replicas and the live brokers
        topics = {name: t for name, t in metadata.topics.items() if t.error is None}
        existing = {name: len(t.partitions) for name, t in topics.items()}
        replicas = {
            name: min((len(p.replicas) for p in t.partitions.values()), default=0) for name, t in topics.items()
        }
        if self._rf is None:
            self._rf = replication_factor_for(len(metadata.brokers))
        changes: list[TopicChange] = []
        to_create = [s for s in catalog if catalog.prefix + s.name not in existing]
        if to_create:
            self._create(catalog.prefix, to_create)
            changes.extend(
                TopicChange(catalog.prefix + s.name, "created", f"{s.partitions} partitions") for s in to_create
            )
        for spec in catalog:
            name = catalog.prefix + spec.name
            if name in existing:
                changes.append(self._align(name, spec, existing[name], replicas.get(name, 0)))
        self._await_ready([catalog.prefix + s.name for s in catalog])
        return changes

    def _await_ready(self, names: list[str]) -> None:
        """Wait until every topic shows in the broker's metadata with a leader for each partition, so that apply's
        postcondition holds at once: a client may produce, fetch or read offsets of any of them (a topic another
        client has just created may still be electing its leaders)."""

        def waiting() -> list[str]:
            topics = self._topics()
            return [
                n
                for n in names
                if n not in topics
                or topics[n].error is not None
                or any(p.leader < 0 or p.error is not None for p in topics[n].partitions.values())
            ]

        self._wait(waiting, "exist but have no leader for every partition")

    def _create(self, prefix: str, specs: Iterable[TopicSpec]) -> None:
        rf = self.replication_factor
        new = [
            NewTopic(
                prefix + s.name,
                num_partitions=s.partitions,
                replication_factor=rf,
                config={**s.config(), **durability_config(rf)},
            )
            for s in specs
        ]
        for name, future in self._admin.create_topics(new, operation_timeout=self._timeout).items():
            try:
                future.result()
            except KafkaException as exc:
                if exc.args and exc.args[0].code() == 36:  # TOPIC_ALREADY_EXISTS: a concurrent apply won
                    continue
                msg = f"cannot create topic {name!r}: {exc}"
                raise TopicError(msg) from exc

    def _align(self, name: str, spec: TopicSpec, partitions: int, replicas: int) -> TopicChange:
        details: list[str] = []
        changed = False
        if partitions < spec.partitions:
            future = self._admin.create_partitions([NewPartitions(name, spec.partitions)])[name]
            try:
                future.result()
            except KafkaException as exc:
                msg = f"cannot grow topic {name!r} from {partitions} to {spec.partitions} partitions: {exc}"
                raise TopicError(msg) from exc
            details.append(f"partitions {partitions} -> {spec.partitions}")
            changed = True
        elif partitions > spec.partitions:
            details.append(f"has {partitions} partitions, declared {spec.partitions} (Kafka cannot shrink; left)")
        current = self.configs(name)
        wanted = {**spec.config(), **durability_config(replicas)}
        drift = {k: v for k, v in wanted.items() if current.get(k) != v}
        if drift:
            entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in drift.items()]
            futures = self._admin.incremental_alter_configs(
                [ConfigResource(ConfigResource.Type.TOPIC, name, incremental_configs=entries)]
            )
            try:
                next(iter(futures.values())).result()
            except KafkaException as exc:
                msg = f"cannot set {drift} on topic {name!r}: {exc}"
                raise TopicError(msg) from exc
            details.extend(f"{k}={v}" for k, v in drift.items())
            changed = True
        return TopicChange(name, "updated" if changed else "unchanged", "; ".join(details))

    def configs(self, name: str) -> dict[str, str | None]:
        """Topic ``name``'s broker configuration, every key with its value.

        On a cluster the request may reach a broker that has not yet heard of a topic just created (by this or
        another client): "unknown topic" is retried for up to 5 s before it is an error."""
        resource = ConfigResource(ConfigResource.Type.TOPIC, name)
        deadline = time.monotonic() + min(5.0, self._timeout)
        while True:
            try:
                described = self._admin.describe_configs([resource])[resource].result()
            except KafkaException as exc:
                unknown = bool(exc.args) and exc.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART
                if unknown and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                msg = f"cannot describe configs of topic {name!r}: {exc}"
                raise TopicError(msg) from exc
            return {key: entry.value for key, entry in described.items()}

    def delete(self, names: Iterable[str], *, wait: bool = False) -> None:
        """Delete topics (tests and throwaway replays only); ``wait``: until the broker's metadata no longer shows
        them, so that a listing right after agrees."""
        names = list(names)
        if not names:
            return
        for name, future in self._admin.delete_topics(names, operation_timeout=self._timeout).items():
            try:
                future.result()
            except KafkaException as exc:
                if exc.args and exc.args[0].code() == 3:  # UNKNOWN_TOPIC_OR_PART
                    continue
                msg = f"cannot delete topic {name!r}: {exc}"
                raise TopicError(msg) from exc
        if wait:
            self._await_gone(names)

    def _await_gone(self, names: list[str]) -> None:
        self._wait(lambda: sorted(set(names) & set(self.existing())), "were deleted but are still listed")

    def matching(self, prefix: str) -> list[str]:
        """The topics on the broker whose names start with ``prefix``, sorted; never Kafka's internal ``__`` ones.

        An empty prefix is refused: it would match every topic."""
        if not prefix:
            msg = "refusing an empty topic prefix: it would match every topic on the broker"
            raise TopicError(msg)
        validate_prefix(prefix)
        return sorted(n for n in self.existing() if n.startswith(prefix) and not n.startswith("__"))

    def delete_prefix(self, prefix: str) -> list[str]:
        """Delete every topic :meth:`matching` ``prefix`` and wait until they are gone; return their names."""
        names = self.matching(prefix)
        self.delete(names, wait=True)
        return names

    def groups(self, prefix: str) -> list[str]:
        """The consumer groups whose ids start with ``prefix`` (non-empty), sorted."""
        if not prefix:
            msg = "refusing an empty consumer group prefix: it would match every group"
            raise TopicError(msg)
        try:
            listed = self._admin.list_consumer_groups(request_timeout=self._timeout).result()
        except KafkaException as exc:
            msg = f"cannot list consumer groups: {exc}"
            raise TopicError(msg) from exc
        return sorted(g.group_id for g in listed.valid if g.group_id.startswith(prefix))

    def delete_groups(self, names: Iterable[str], *, patience_s: float = 0.0) -> list[str]:
        """Delete consumer groups (their committed offsets); return those deleted. A group that still has members
        is retried for up to ``patience_s`` (a static member stays until its session times out, even after its
        consumer closed), then left out; a group already gone is left out too."""
        pending = list(names)
        deleted: list[str] = []
        deadline = time.monotonic() + patience_s
        while pending:
            busy = []
            for name, future in self._admin.delete_consumer_groups(pending, request_timeout=self._timeout).items():
                try:
                    future.result()
                except KafkaException as exc:
                    code = exc.args[0].code() if exc.args else None
                    if code == KafkaError.NON_EMPTY_GROUP:
                        busy.append(name)
                    elif code != KafkaError.GROUP_ID_NOT_FOUND:  # gone already: nothing of ours to remove
                        msg = f"cannot delete consumer group {name!r}: {exc}"
                        raise TopicError(msg) from exc
                    continue
                deleted.append(name)
            if not busy or time.monotonic() > deadline:
                break
            pending = busy
            time.sleep(0.2)
        return sorted(deleted)


def members_holding_partitions(admin: AdminClient, group: str) -> int:
    """How many members of consumer group ``group`` hold partitions: 0 while it forms, or while the broker cannot
    describe it yet (its coordinator still loading is an answer too)."""
    try:
        description = admin.describe_consumer_groups([group], request_timeout=5)[group].result(timeout=10)
    except Exception:  # noqa: BLE001 - any failure to describe means "not yet"
        return 0
    return sum(1 for m in description.members if m.assignment is not None and m.assignment.topic_partitions)
