"""Predictions as recorded in a slice and as a replay produced them, decoded with the contracts."""

from __future__ import annotations

from typing import Any

from slipstream.replay.exceptions import ReplayError
from slipstream.replay.kafka_io import Span, partitions_of, raw_consumer, read_span, watermarks
from slipstream.replay.slice_file import SliceReader
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.exceptions import DecodeError

PREDICTIONS = "predictions"


def recorded_predictions(reader: SliceReader, contracts: Contracts) -> list[dict[str, Any]]:
    """The slice's recorded predictions, in (partition, offset) order."""
    serde = contracts.serde(PREDICTIONS)
    out: list[dict[str, Any]] = []
    for record in reader.records("outputs", PREDICTIONS):
        try:
            out.append(serde.decode(record.value))
        except DecodeError as exc:
            msg = f"slice {str(reader.path)!r}: a recorded prediction does not decode: {exc}"
            raise ReplayError(msg) from exc
    return out


def read_predictions(bootstrap: str, contracts: Contracts, *, expected: int) -> list[dict[str, Any]]:
    """Every prediction on the replay's topic (all of it is the replay's); at least ``expected`` of them."""
    serde = contracts.serde(PREDICTIONS)
    full = contracts.topic(PREDICTIONS)
    consumer = raw_consumer(bootstrap)
    out: list[dict[str, Any]] = []
    try:
        for p in partitions_of(consumer, full):
            low, high = watermarks(consumer, full, p)
            out.extend(serde.decode(r.value) for r in read_span(consumer, Span(full, p, low, high), PREDICTIONS))
    finally:
        consumer.close()
    if len(out) < expected:
        msg = f"the replay scored {expected:,} events but only {len(out):,} predictions are on {full!r}"
        raise ReplayError(msg)
    return out
