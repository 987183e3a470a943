"""Publish a file of events (parquet or JSON lines) to a topic, as fast as possible or at a fixed rate."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from slipstream.schemas.dead_letter import RawMessage
from slipstream.schemas.exceptions import SerializationError
from slipstream.schemas.registry import SchemaVersion
from slipstream.schemas.serde import timestamp_fields
from slipstream.schemas.transport import EventProducer
from slipstream.streams.exceptions import PublishError

OnError = Literal["fail", "dead-letter"]
SUPPORTED = (".parquet", ".jsonl", ".ndjson")


def frame_records(frame: Any) -> list[dict[str, Any]]:
    """Rows of a pandas frame as records for a producer, tz-aware timestamps as epoch microseconds."""
    import pandas as pd

    out = frame.copy()
    for column in out.columns:
        if isinstance(out[column].dtype, pd.DatetimeTZDtype):
            out[column] = out[column].astype("int64") // 1000
    records: list[dict[str, Any]] = out.to_dict("records")
    return records


def count_rows(path: Path) -> int:
    """Number of records in an event file, without reading the data."""
    if path.suffix == ".parquet":
        return int(pq.ParquetFile(path).metadata.num_rows)
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())


def _check_file(path: Path) -> None:
    if not path.exists():
        msg = f"event file {str(path)!r} does not exist"
        raise SerializationError(msg)
    if path.suffix not in SUPPORTED:
        msg = f"event file {str(path)!r} must end in one of {', '.join(SUPPORTED)}"
        raise SerializationError(msg)


def _timestamps_to_micros(table: pa.Table, names: tuple[str, ...], assume_utc: bool, path: Path) -> pa.Table:
    for name in names:
        if name not in table.column_names:
            continue
        column = table[name]
        if pa.types.is_timestamp(column.type):
            if column.type.tz is None and not assume_utc:
                msg = (
                    f"column {name!r} of {str(path)!r} holds naive timestamps; event times must be timezone-aware "
                    "(write them with a time zone, or pass --assume-utc)"
                )
                raise SerializationError(msg)
            micros = pc.cast(pc.cast(column, pa.timestamp("us", tz=column.type.tz or "UTC")), pa.int64())
            table = table.set_column(table.column_names.index(name), name, micros)
    return table


def read_batches(
    path: Path, schema: SchemaVersion, *, batch_size: int = 10_000, assume_utc: bool = False
) -> Iterator[list[dict[str, Any]]]:
    """Yield lists of records with the schema's fields; timestamps become epoch microseconds (UTC)."""
    _check_file(path)
    fields = [f["name"] for f in schema.raw["fields"]]
    ts_fields = timestamp_fields(schema.raw)
    if path.suffix == ".parquet":
        parquet = pq.ParquetFile(path)
        present = [f for f in fields if f in parquet.schema_arrow.names]
        for batch in parquet.iter_batches(batch_size=batch_size, columns=present):
            table = _timestamps_to_micros(pa.Table.from_batches([batch]), ts_fields, assume_utc, path)
            yield table.to_pylist()
        return
    batch_records: list[dict[str, Any]] = []
    with path.open("r", encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                msg = f"{path}:{line_no}: not valid JSON: {exc}"
                raise SerializationError(msg) from exc
            record = {k: obj[k] for k in fields if k in obj}
            for name in ts_fields:
                value = record.get(name)
                if isinstance(value, str):
                    try:
                        parsed = datetime.fromisoformat(value)
                    except ValueError as exc:
                        msg = f"{path}:{line_no}: {name}={value!r} is not an ISO-8601 timestamp"
                        raise SerializationError(msg) from exc
                    if parsed.tzinfo is None:
                        msg = f"{path}:{line_no}: {name}={value!r} has no time zone"
                        raise SerializationError(msg)
                    record[name] = parsed
            batch_records.append(record)
            if len(batch_records) >= batch_size:
                yield batch_records
                batch_records = []
    if batch_records:
        yield batch_records


class Pacer:
    """Open-loop pacing: record ``i`` is due at ``start + i / rate``; never waits when behind schedule."""

    def __init__(
        self,
        rate: float | None,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate is not None and rate <= 0:
            msg = f"rate must be > 0 events/s, got {rate!r}"
            raise PublishError(msg)
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._start = clock()

    def due(self, index: int) -> float:
        """Seconds until record ``index`` is due (<= 0 means now)."""
        if self.rate is None:
            return 0.0
        return self._start + index / self.rate - self._clock()

    def wait(self, index: int) -> None:
        delay = self.due(index)
        if delay > 0:
            self._sleep(delay)


@dataclass(slots=True)
class PublishReport:
    topic: str
    sent: int = 0
    dead_lettered: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def events_per_s(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


def publish_file(
    producer: EventProducer,
    topic: str,
    path: Path,
    *,
    rate: float | None = None,
    limit: int | None = None,
    on_error: OnError = "fail",
    assume_utc: bool = False,
    progress: Callable[[int], None] | None = None,
) -> PublishReport:
    """Send every record of ``path`` to the logical ``topic``; flushes before returning.

    A record that does not fit the contract stops the run with its row number (``on_error="fail"``), or goes
    to the dead-letter topic as JSON with the reason (``on_error="dead-letter"``).
    """
    contracts = producer.contracts
    serde = contracts.serde(topic)
    report = PublishReport(serde.topic)
    pacer = Pacer(rate)
    started = time.perf_counter()
    index = 0
    step = 1 if rate is not None and rate < 2000 else 64
    for batch in read_batches(path, serde.schema, assume_utc=assume_utc):
        for record in batch:
            if limit is not None and index >= limit:
                break
            if index % step == 0:
                pacer.wait(index)
            try:
                value = serde.encode(record)
                key = contracts.key(topic, record)
            except SerializationError as exc:
                reason = f"row {index}: {exc}"
                if on_error == "fail":
                    producer.flush()
                    raise SerializationError(reason) from exc
                _dead_letter_row(producer, serde.topic, index, record, reason)
                report.dead_lettered += 1
                if len(report.errors) < 20:
                    report.errors.append(reason)
            else:
                producer.send_raw(serde.topic, key, value)
                report.sent += 1
            index += 1
        if progress is not None:
            progress(index)
        if limit is not None and index >= limit:
            break
    producer.flush(timeout=120)
    report.seconds = time.perf_counter() - started
    return report


def _dead_letter_row(producer: EventProducer, topic: str, index: int, record: dict[str, Any], reason: str) -> None:
    raw = RawMessage(topic, -1, index, None, None, json.dumps(record, default=str).encode())
    producer.dead_letter(raw, error_type="invalid_field", reason=reason, processor="slipstream-produce")
