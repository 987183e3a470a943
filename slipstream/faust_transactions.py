"""The two places :class:`~slipstream.faust_processor.FaustProcessor` reaches into aiokafka and Faust: one batch's
transaction (outputs, changelog entries, dead letters and input offsets, all or nothing) and the consumer thread's
fetch state of a partition (its position past transaction markers, its last stable offset)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition

from slipstream.monitoring.batch_encoding import Out
from slipstream.monitoring.exceptions import MonitoringError
from slipstream.monitoring.transactional import ProcessorStats
from slipstream.streams.engine.faust_patches import topic_partition


def fetch_state(app: Any, tp: Any) -> tuple[int | None, int | None]:
    """aiokafka's position (steps over transaction markers) and last stable offset of ``tp``; None when unknown.
    Read from the consumer thread's state (plain attributes), as :mod:`.faust_patches` reads Faust's."""
    try:
        consumer = app.consumer._thread._ensure_consumer()
        assignment = consumer._subscription.subscription.assignment
        state = assignment.state_value(TopicPartition(tp.topic, tp.partition)) if assignment is not None else None
    except Exception:  # noqa: BLE001 - no consumer, no subscription yet: nothing known
        return None, None
    if state is None or not state.has_valid_position:
        return None, None
    lso = state.lso
    return int(state.position), (int(lso) if lso is not None and lso >= 0 else None)


async def commit_batch(
    producer: AIOKafkaProducer,
    consumer: Any,
    group: str,
    name: str,
    records: list[Out],
    offsets: Mapping[tuple[str, int], int],
    stats: ProcessorStats,
) -> None:
    """One transaction: ``records`` and the batch's input ``offsets`` (for ``group``) commit together or not at all.
    Refused before it begins when Faust's ``consumer`` no longer holds a partition of the batch (revoked under us: its
    new owner replays it). A failure aborts it and raises :class:`MonitoringError` naming ``name``."""
    held = {tp.partition for tp in consumer.assignment()}
    lost = sorted({p for _, p in offsets} - held)
    if lost:
        msg = f"{name}: partitions {lost} were lost before their batch could be committed"
        raise MonitoringError(msg)
    await producer.begin_transaction()
    try:
        futures = [await producer.send(t, value=v, key=k, partition=p) for t, p, k, v in records]
        if offsets:
            positions = {TopicPartition(t, p): o for (t, p), o in offsets.items()}
            await producer.send_offsets_to_transaction(positions, group)
        await producer.flush()
        for future in futures:
            future.result()  # a failed send raises here: the transaction is aborted
        await producer.commit_transaction()
    except BaseException as exc:
        stats.aborted += 1
        with contextlib.suppress(Exception):  # a fenced producer cannot abort: the broker does, on its timeout
            await producer.abort_transaction()
        if isinstance(exc, Exception):
            msg = f"{name}: transaction aborted ({exc!r}); a restart resumes from the committed state"
            raise MonitoringError(msg) from exc
        raise
    stats.transactions += 1
    committed = consumer._committed_offset
    for (t, p), o in offsets.items():
        committed[topic_partition(t, p)] = o  # Faust's view of the group's offsets, as committed


__all__ = ["commit_batch", "fetch_state"]
