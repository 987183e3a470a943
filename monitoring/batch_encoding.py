"""A handler's output as the records a transaction produces: contract records keyed by their topic's key field and
partitioned as every other Slipstream producer partitions them, changelog entries on their partition, dead letters in
their envelope. Pure (the partition counts are given): used by the Faust host, whose aiokafka producer would
otherwise partition by murmur2 where librdkafka, everywhere else, uses CRC-32."""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from slipstream.monitoring.exceptions import MonitoringError
from slipstream.monitoring.transactional import Emitted
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.dead_letter import RawMessage, envelope

Out = tuple[str, int, bytes | None, bytes | None]  # (full topic, partition, key, value)


def partition_for(key: bytes, partitions: int) -> int:
    """librdkafka's default (``consistent_random``: CRC-32 of the key), the partitioner of every other Slipstream
    producer, so a record lands where the Kafka runtime would put it (aiokafka's own is murmur2)."""
    return zlib.crc32(key) % partitions


class BatchEncoder:
    """A handler's output as records to produce: contract records keyed by their topic's key field, changelog entries
    on their partition, dead letters in their envelope. Pure: the partition counts are given."""

    def __init__(self, contracts: Contracts, partitions: Mapping[str, int], changelog: str | None, processor: str):
        self.contracts = contracts
        self.partitions = partitions  # full topic name -> partition count
        self.changelog = changelog
        self.processor = processor
        self._outputs: dict[str, tuple[str, Callable[[Mapping[str, Any]], bytes], str]] = {}
        self._spread = itertools.count()  # dead letters without a key: round robin

    def _count(self, topic: str) -> int:
        n = self.partitions.get(topic)
        if n is None:
            msg = f"{self.processor}: topic {topic!r} does not exist on the broker (run `slipstream topics apply`)"
            raise MonitoringError(msg)
        return n

    def encode(self, emitted: Emitted, dead: Sequence[tuple[RawMessage, str, str]]) -> list[Out]:
        out: list[Out] = []
        for topic, record in emitted.records:
            full, encode, key_field = self._outputs.get(topic) or self._output(topic)
            key_value = record.get(key_field)
            key = self.contracts.key(topic, record) if key_value is None else str(key_value).encode()
            out.append((full, partition_for(key, self._count(full)), key, encode(record)))
        for partition, key, value in emitted.changelog:
            if self.changelog is None:
                msg = f"{self.processor}: changelog entry for partition {partition} but the processor has no changelog"
                raise MonitoringError(msg)
            out.append((self.changelog, partition, key, value))
        if dead:
            serde = self.contracts.serde("dead-letter")
            topic = self.contracts.topic("dead-letter")
            n = self._count(topic)
            failed_at = datetime.now(UTC)
            for raw, error_type, reason in dead:
                record = envelope(
                    raw, error_type=error_type, reason=reason, processor=self.processor, failed_at=failed_at
                )
                partition = partition_for(raw.key, n) if raw.key is not None else next(self._spread) % n
                out.append((topic, partition, raw.key, serde.encode(record)))
        return out

    def _output(self, topic: str) -> tuple[str, Callable[[Mapping[str, Any]], bytes], str]:
        serde = self.contracts.serde(topic)
        output = self._outputs[topic] = (serde.topic, serde.encode, self.contracts.spec(topic).key_field)
        return output


__all__ = ["BatchEncoder", "Out", "partition_for"]
