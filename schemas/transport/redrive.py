"""Dead letters off the wire and back on: list envelopes, show one, re-drive them exactly once.

A re-drive sends each chosen envelope's original key, value and headers (plus the re-drive marks) to its original
topic — the same partition while it exists, the original timestamp — and, in the same Kafka transaction, records the
re-drive in the compacted ``dead-letter-redrives`` log under the envelope's ``topic:partition:offset``. Every re-drive
of a namespace uses one transactional id, so a second run started while one is under way fences it (its open
transaction is aborted), and each run reads the log, committed records only, after it has fenced the others and
before it chooses. An envelope whose re-drive was committed is never chosen again; one whose re-drive was aborted
was never sent (to a ``read_committed`` consumer, librdkafka's default).

The choosing is pure (:mod:`slipstream.schemas.dead_letter_filters`); this module only reads and writes Kafka.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from slipstream.schemas.contracts import Contracts
from slipstream.schemas.dead_letter import DEAD_LETTER_TOPIC, QUARANTINE_TOPIC, REDRIVE_LOG_TOPIC
from slipstream.schemas.dead_letter_filters import (
    Coordinate,
    Letter,
    LetterFilter,
    RedriveEntry,
    RedrivePlan,
    plan_redrive,
    redrive_headers,
    redrive_id,
)
from slipstream.schemas.exceptions import DecodeError, ProduceError, TopicError
from slipstream.schemas.transport.connection import KafkaLike, kafka_config

TXN_TIMEOUT_S = 30.0
#: Re-sent records (and their log entries) per transaction.
CHUNK = 500
_ELECTING = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError._TIMED_OUT}
_READER_GROUP = "slipstream-dead-letters"  # never joined, never committed: readers assign their partitions
_FENCED = {KafkaError._FENCED, KafkaError._FATAL, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}


def _reader(bootstrap_servers: KafkaLike) -> Consumer:
    return Consumer(
        {
            **kafka_config(bootstrap_servers),
            "group.id": _READER_GROUP,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "log_level": 4,
        }
    )


def _partitions(client: Consumer | Producer, topic: str) -> list[int]:
    try:
        metadata = client.list_topics(topic, timeout=10).topics.get(topic)
    except KafkaException as exc:
        msg = f"cannot read the metadata of {topic!r}: {exc.args[0].str()}"
        raise TopicError(msg) from exc
    if metadata is None or metadata.error is not None:
        msg = f"topic {topic!r} does not exist on the broker (run `slipstream topics apply`)"
        raise TopicError(msg)
    return sorted(metadata.partitions)


def _watermarks(reader: Consumer, topic: str, partition: int, patience_s: float = 30.0) -> tuple[int, int]:
    """The partition's first and end offsets, waiting out a leader election (a busy or restarting broker)."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            low, high = reader.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            return int(low), int(high)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if not (error.retriable() or error.code() in _ELECTING) or time.monotonic() > deadline:
                msg = f"cannot read the offsets of {topic}[{partition}]: {exc.args[0].str()}"
                raise TopicError(msg) from exc
            time.sleep(0.2)


def read_to_end(bootstrap_servers: KafkaLike, topic: str, timeout_s: float = 30.0) -> Iterator[Message]:
    """Every committed record of ``topic`` (a full name), partition by partition as fetched, up to the end each
    partition had when the read reached it; :class:`TopicError` if the end is not reached within ``timeout_s``."""
    reader = _reader(bootstrap_servers)
    try:
        pending: set[int] = set()
        for partition in _partitions(reader, topic):
            low, high = _watermarks(reader, topic, partition)
            if high > low:
                pending.add(partition)
        if not pending:
            return
        reader.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(pending)])
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                msg = f"reading {topic!r}: partitions {sorted(pending)} not read to their end after {timeout_s:g} s"
                raise TopicError(msg)
            for message in reader.consume(1000, 0.5):
                err = message.error()
                if err is None:
                    yield message
                elif err.code() == KafkaError._PARTITION_EOF:
                    pending.discard(message.partition() or 0)
                elif err.fatal() or not err.retriable():
                    msg = f"reading {topic!r}: {err.str()}"
                    raise TopicError(msg)
    finally:
        reader.close()


def _letter(contracts: Contracts, logical: str, message: Message) -> Letter | None:
    try:
        record = contracts.serde(logical).decode(message.value())
    except DecodeError:
        return None  # not an envelope: nothing of ours wrote it
    return Letter(logical, Coordinate(message.partition() or 0, message.offset() or 0), record)


@dataclass(frozen=True, slots=True)
class Listing:
    """The letters of one dead-letter topic that matched, and how many records were no envelope at all."""

    topic: str
    letters: list[Letter]
    unreadable: int = 0


def list_dead_letters(
    bootstrap_servers: KafkaLike,
    contracts: Contracts,
    where: LetterFilter | None = None,
    *,
    quarantine: bool = False,
    timeout_s: float = 30.0,
) -> Listing:
    """The envelopes in ``dead-letter`` (or ``dead-letter-quarantine``) that ``where`` takes, oldest failure first."""
    logical = QUARANTINE_TOPIC if quarantine else DEAD_LETTER_TOPIC
    letters: list[Letter] = []
    unreadable = 0
    for message in read_to_end(bootstrap_servers, contracts.topic(logical), timeout_s):
        letter = _letter(contracts, logical, message)
        if letter is None:
            unreadable += 1
        elif where is None or where.matches(letter):
            letters.append(letter)
    letters.sort(key=lambda x: (x.failed_at, x.coordinate))
    return Listing(logical, letters, unreadable)


def find_dead_letter(
    bootstrap_servers: KafkaLike, contracts: Contracts, coordinate: Coordinate, *, quarantine: bool = False
) -> Letter | None:
    """The envelope at ``coordinate``, or ``None`` when there is none (an offset past the end, or compacted away)."""
    logical = QUARANTINE_TOPIC if quarantine else DEAD_LETTER_TOPIC
    topic = contracts.topic(logical)
    reader = _reader(bootstrap_servers)
    try:
        if coordinate.partition not in _partitions(reader, topic):
            return None
        low, high = _watermarks(reader, topic, coordinate.partition)
        if not low <= coordinate.offset < high:
            return None
        reader.assign([TopicPartition(topic, coordinate.partition, coordinate.offset)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            message = reader.poll(0.5)
            if message is None:
                continue
            err = message.error()
            if err is not None and err.code() == KafkaError._PARTITION_EOF:
                return None
            if err is None:
                if message.offset() != coordinate.offset:
                    return None  # the offset was a transaction marker, or a record aborted
                return _letter(contracts, logical, message)
        return None
    finally:
        reader.close()


def read_redrive_log(
    bootstrap_servers: KafkaLike, contracts: Contracts, timeout_s: float = 30.0
) -> dict[str, RedriveEntry]:
    """Every committed re-drive, by the envelope's log key (a tombstone forgets one)."""
    done: dict[str, RedriveEntry] = {}
    for message in read_to_end(bootstrap_servers, contracts.topic(REDRIVE_LOG_TOPIC), timeout_s):
        key = (message.key() or b"").decode()
        value = message.value()
        if value is None:
            done.pop(key, None)
        else:
            done[key] = RedriveEntry.decode(value)
    return done


@dataclass(slots=True)
class RedriveReport:
    """What a re-drive did (or, with ``dry_run``, would do)."""

    redrive_id: str
    dry_run: bool
    plan: RedrivePlan
    redriven: list[Letter] = field(default_factory=list)
    transactions: int = 0

    @property
    def skipped_already(self) -> int:
        return len(self.plan.already)


def _transactional_producer(bootstrap_servers: KafkaLike, contracts: Contracts) -> Producer:
    """One transactional id per namespace: any two re-drives of it fence each other."""
    producer = Producer(
        {
            **kafka_config(bootstrap_servers),
            "transactional.id": f"slipstream-redrive.{contracts.topic(REDRIVE_LOG_TOPIC)}",
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "transaction.timeout.ms": int(TXN_TIMEOUT_S * 2000),
            "log_level": 4,
        }
    )
    try:
        producer.init_transactions(TXN_TIMEOUT_S)
    except KafkaException as exc:
        msg = f"cannot start a re-drive transaction: {exc.args[0].str()}"
        raise ProduceError(msg) from exc
    return producer


def _send_chunk(
    producer: Producer, letters: Sequence[Letter], run_id: str, now: datetime, partitions: Mapping[str, int], log: str
) -> None:
    producer.begin_transaction()
    for letter in letters:
        record = letter.record
        topic, partition = letter.source_topic, int(record["source_partition"])
        kwargs: dict[str, Any] = {"headers": redrive_headers(letter, run_id)}
        if partition < partitions[topic]:
            kwargs["partition"] = partition
        target = f"{topic}:{partition}" if "partition" in kwargs else topic
        timestamp = letter.source_timestamp_ms
        if timestamp is not None:
            kwargs["timestamp"] = timestamp
        producer.produce(topic, record.get("original_value"), record.get("original_key"), **kwargs)
        entry = RedriveEntry(letter.identity, run_id, now, target)
        producer.produce(log, entry.encode(), letter.log_key.encode())
        producer.poll(0)
    producer.commit_transaction(TXN_TIMEOUT_S)


def redrive(
    bootstrap_servers: KafkaLike,
    contracts: Contracts,
    where: LetterFilter | None = None,
    *,
    from_quarantine: bool = False,
    allow_quarantined: bool | None = None,
    dry_run: bool = False,
    limit: int | None = None,
    now: datetime | None = None,
    timeout_s: float = 30.0,
) -> RedriveReport:
    """Send the letters ``where`` takes back to their original topics, each at most once ever (see the module's
    docstring). ``from_quarantine`` reads ``dead-letter-quarantine`` instead of ``dead-letter`` and allows re-driving
    what failed after a re-drive; ``allow_quarantined`` (default: ``from_quarantine``) allows it in ``dead-letter``
    too (envelopes of re-driven originals from a writer that does not route to the quarantine); ``dry_run`` plans
    without fencing or sending anything; ``limit`` caps the sends."""
    started = now or datetime.now(UTC)
    run_id = redrive_id(started, uuid.uuid4().hex[:8])
    producer = None if dry_run else _transactional_producer(bootstrap_servers, contracts)
    failed = False
    try:
        done = read_redrive_log(bootstrap_servers, contracts, timeout_s)
        listing = list_dead_letters(
            bootstrap_servers, contracts, where, quarantine=from_quarantine, timeout_s=timeout_s
        )
        allowed = from_quarantine if allow_quarantined is None else allow_quarantined
        plan = plan_redrive(listing.letters, done, from_quarantine=allowed, limit=limit)
        report = RedriveReport(run_id, dry_run, plan)
        if producer is not None:
            _send(producer, contracts, report, started)
    except ProduceError:
        failed = True  # fenced or failed: librdkafka refuses to close a producer in its fatal state; the GC frees it
        raise
    finally:
        if producer is not None and not failed:
            producer.close()
    return report


def _send(producer: Producer, contracts: Contracts, report: RedriveReport, started: datetime) -> None:
    plan = report.plan
    partitions: dict[str, int] = {}
    for topic in sorted({letter.source_topic for letter in plan.chosen}):
        partitions[topic] = len(_partitions(producer, topic))
    log = contracts.topic(REDRIVE_LOG_TOPIC)
    for start in range(0, len(plan.chosen), CHUNK):
        chunk = plan.chosen[start : start + CHUNK]
        try:
            _send_chunk(producer, chunk, report.redrive_id, started, partitions, log)
        except KafkaException as exc:
            _abort(producer, exc, report)
        report.redriven.extend(chunk)
        report.transactions += 1


def _abort(producer: Producer, exc: KafkaException, report: RedriveReport) -> None:
    """Abort the open transaction if it can be, and raise :class:`ProduceError` saying what was committed."""
    error: KafkaError = exc.args[0]
    committed = f"{len(report.redriven)} re-driven and recorded before this"
    if error.code() in _FENCED or error.fatal():  # a fenced producer's later calls fail with _FATAL
        msg = (
            f"re-drive {report.redrive_id} was stopped ({error.str()}), most likely fenced by another re-drive of the"
            f" same namespace; its open transaction is not committed ({committed}); run it again to re-drive what"
            " is left"
        )
        raise ProduceError(msg) from exc
    if error.txn_requires_abort():
        producer.abort_transaction(TXN_TIMEOUT_S)
    msg = f"re-drive {report.redrive_id} failed, its open transaction not committed ({committed}): {error.str()}"
    raise ProduceError(msg) from exc
