"""How far a consumer group is behind its input topics: committed offsets against the partitions' ends."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from slipstream.chaos.exceptions import ChaosError
from slipstream.schemas.transport.connection import KafkaLike, kafka_config


class GroupLag:
    """Reads one group's lag over ``topics`` (every partition): end offset minus committed offset, summed; a
    partition with nothing committed counts whole."""

    def __init__(
        self, bootstrap_servers: KafkaLike, group: str, topics: Sequence[str], *, timeout_s: float = 10.0
    ) -> None:
        self.group = group
        self._timeout = timeout_s
        self._admin = AdminClient(kafka_config(bootstrap_servers))
        self._ends = Consumer({**kafka_config(bootstrap_servers), "group.id": f"slipstream-lag-{uuid.uuid4().hex[:8]}"})
        try:
            metadata = self._ends.list_topics(timeout=timeout_s)
        except KafkaException as exc:
            self._ends.close()
            msg = f"cannot read the partitions of {list(topics)}: {exc}"
            raise ChaosError(msg) from exc
        self._partitions = [
            TopicPartition(topic, p) for topic in topics for p in sorted(metadata.topics[topic].partitions)
        ]

    def lag(self) -> int:
        done, end = self.progress()
        return end - done

    def progress(self) -> tuple[int, int]:
        """(records committed, records the inputs hold): the group's progress as the broker knows it, which a
        killed worker's lost reports cannot skew."""
        request = [ConsumerGroupTopicPartitions(self.group, self._partitions)]
        try:
            future = self._admin.list_consumer_group_offsets(request, request_timeout=self._timeout)[self.group]
            committed = {(tp.topic, tp.partition): tp.offset for tp in future.result().topic_partitions}
            done = end = 0
            for tp in self._partitions:
                low, high = self._ends.get_watermark_offsets(tp, timeout=self._timeout, cached=False)
                done += max(committed.get((tp.topic, tp.partition), -1), low) - low
                end += high - low
        except KafkaException as exc:
            msg = f"cannot read the lag of group {self.group!r}: {exc}"
            raise ChaosError(msg) from exc
        return done, end

    def close(self) -> None:
        self._ends.close()
