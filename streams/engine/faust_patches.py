"""The Faust app a stage runs in, and the two Faust defects it mends (faust-streaming 0.15.3, aiokafka 0.14).

1. **The commit.** Faust's ``Consumer._new_offset`` tests ``min(acked) - committed > 1`` although ``committed`` is
   already the next offset to read, and skips the test when it is 0: a single event left unacknowledged right after
   the committed offset is committed past, and lost on a restart. Faust also acknowledges the events of an old
   generation it drops after a rebalance without processing them. And ``Consumer.commit()`` returns without
   committing when another commit is in flight, or when the broker refused it, and records the offsets as committed
   either way. So Faust commits nothing by itself here (``_new_offset`` is ``None``); the runtime commits exactly its
   commit points through :meth:`_Consumer.commit_offsets`, which says what the broker took. The gaps in offsets Faust
   records for its own commit point (one per upstream transaction marker) are not recorded.
2. **The revoke.** Faust drops the acknowledged, uncommitted offsets of revoked partitions before anything else runs,
   so the hand-over (flush, acknowledge, commit, drop state) runs first, in the consumer's ``on_partitions_revoked``.

Also: partitions whose state is being restored stay paused when Faust resumes every assigned partition after a
rebalance; the consumer reads ``read_committed`` with the Kafka runtime's fetch sizes (settings Faust does not
expose). Pinned in pyproject: these override Faust's private methods, and the Faust contract tests run them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Protocol

import faust
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as AIOConsumer
from faust.types import TP

from slipstream.schemas.transport.connection import as_connection
from slipstream.streams.engine.settings import EngineSettings


class FaustHooks(Protocol):
    """What the app calls back: a batch the agent took, partitions assigned (after the rebalance, before Faust
    resumes them), partitions about to be revoked; ``restoring``: the partitions to keep paused."""

    restoring: set[Any]

    async def on_batch(self, events: list[Any]) -> None: ...

    async def on_assigned(self, assigned: set[Any]) -> None: ...

    async def hand_over(self, revoked: set[Any], *, stopping: bool = False) -> None: ...


def topic_partition(topic: str, partition: int) -> TP:
    return TP(topic, partition)


class _ConsumerThread(AIOKafkaConsumerThread):
    settings: EngineSettings

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Read by AIOKafkaConsumer.start() when it builds its fetcher; Faust fixes the wait at 1.5 s, which was the
        # Faust runtime's freshness until it got the Kafka runtime's fetch settings.
        extra = {
            "_isolation_level": "read_committed",
            "_fetch_max_bytes": 64 * 1024**2,
            "_fetch_max_wait_ms": self.settings.fetch_wait_max_ms,
            "_fetch_min_bytes": self.settings.fetch_min_bytes,
        }
        for attr, value in extra.items():
            setattr(consumer, attr, value)
        return consumer


class _Consumer(AIOConsumer):
    hooks: FaustHooks

    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        thread = _ConsumerThread(self, loop=self.loop, beacon=self.beacon)
        thread.settings = self.app.stage_settings  # type: ignore[attr-defined]  # StageApp's
        return thread

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        if not self.app.should_stop and self.assignment():
            self.stop_flow()
            self.app.flow_control.suspend()
            await self.hooks.hand_over(set(revoked))
        await super().on_partitions_revoked(revoked)

    def _new_offset(self, tp: TP) -> int | None:
        """Nothing for Faust's own commits (its timer, every N acknowledgements, on stop): the runtime commits."""
        return None

    async def commit_offsets(self, offsets: dict[TP, int]) -> set[TP]:
        """Commit ``offsets`` of assigned partitions, none behind what is committed already; the partitions whose
        committed offset is now at least the one asked (empty when the broker refused: the group rebalanced first).
        The caller runs one at a time."""
        assignment = self.assignment()
        mine = {tp: at for tp, at in offsets.items() if tp in assignment}
        new = {tp: at for tp, at in mine.items() if (self._committed_offset.get(tp) or 0) < at}
        if new:
            if not await self._commit(new):  # the consumer thread's commit: True once the broker took it
                return set()
            self._committed_offset.update(new)
        return set(mine)

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """Not recorded: Faust keeps every gap in a partition's offsets (each transaction marker of a
        ``read_committed`` input is one) for its own commit point, replaced here, so the record only grew (an
        interval tree merged on every gap: memory, and CPU per gap, growing with the number of upstream
        transactions)."""

    def resume_partitions(self, tps: Iterable[TP]) -> None:
        wanted = {TP(tp.topic, tp.partition) for tp in tps}  # an aiokafka TopicPartition would crash the fetcher
        super().resume_partitions(wanted - self.hooks.restoring)


def faust_app(hooks: FaustHooks, settings: EngineSettings, group: str, inputs: list[str], datadir: str) -> Any:
    """The stage's app: group ``group`` (Faust's app id), one agent over every input, no tables, no web server."""

    class StageApp(faust.App):
        stage_settings: EngineSettings

        async def _stop_consumer(self) -> None:
            """Hand every partition over (flush, commit, drop) before Faust stops the consumer."""
            if self._consumer is not None:
                try:
                    assignment = set(self._consumer.assignment())
                except Exception:  # noqa: BLE001 - a consumer that never started has nothing to hand over
                    assignment = set()
                if assignment:
                    await hooks.hand_over(assignment, stopping=True)
            await super()._stop_consumer()

        def _new_consumer(self) -> Any:
            consumer = _Consumer(
                self.transport,
                callback=self.topics.on_message,
                on_partitions_revoked=self._on_partitions_revoked,
                on_partitions_assigned=self._on_partitions_assigned,
                beacon=self.beacon,
                loop=self.loop,
            )
            consumer.hooks = hooks
            return consumer

    session_s = settings.session_timeout_ms / 1000
    app = StageApp(
        group,
        **as_connection(settings.bootstrap_servers).faust_options(),  # broker, and broker_credentials when secured
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        consumer_max_fetch_size=4 * 1024**2,
        broker_max_poll_records=settings.batch_size,
        broker_commit_interval=max(settings.commit_interval_s, 1.0),
        broker_session_timeout=session_s,
        broker_heartbeat_interval=max(0.1, session_s / 10),  # as the Kafka runtime: a rebalance noticed within ~1 s
        consumer_group_instance_id=f"{group}-worker-{settings.worker_id}" if settings.worker_id is not None else None,
        stream_wait_empty=False,  # the hand-over acknowledges what it drops; nothing to wait for
        table_standby_replicas=1,  # Faust's co-partitioning assignor (round robin would split an input's partitions)
        topic_disable_leader=True,
        topic_replication_factor=1,
        worker_redirect_stdouts=False,
        datadir=datadir,
    )
    app.stage_settings = settings  # the consumer (made when the app starts) reads its fetch settings here
    topic = app.topic(*inputs, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    @app.agent(topic)
    async def stage(stream: Any) -> None:
        async for events in stream.noack_take(settings.batch_size, within=settings.poll_timeout_s):
            await hooks.on_batch(list(events))

    async def _assigned(sender: Any, *_args: Any, **_kw: Any) -> None:
        await hooks.on_assigned(set(app.consumer.assignment()))

    signal: Any = app.on_rebalance_complete
    signal.connect(_assigned)  # awaited before Faust resumes the partitions

    logging.getLogger("faust").setLevel(logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    return app


__all__ = ["FaustHooks", "faust_app", "topic_partition"]
