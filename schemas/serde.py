"""Encode records to framed Avro bytes and decode them back, turning bad bytes into reasons, not crashes."""

from __future__ import annotations

import io
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import fastavro
from fastavro.validation import ValidationError, validate

from slipstream.schemas.base import Framing, RecordValidator
from slipstream.schemas.compiled_reader import compile_reader
from slipstream.schemas.compiled_writer import compile_writer
from slipstream.schemas.exceptions import DecodeError, SerializationError
from slipstream.schemas.registry import SchemaVersion


def timestamp_fields(raw: Mapping[str, Any]) -> tuple[str, ...]:
    """Top-level fields whose type is (or may be) a timestamp logical type."""
    names = []
    for field in raw.get("fields", []):
        types = field["type"] if isinstance(field["type"], list) else [field["type"]]
        if any(isinstance(t, dict) and str(t.get("logicalType", "")).startswith("timestamp") for t in types):
            names.append(field["name"])
    return tuple(names)


class AvroSerde:
    """The serde of one topic's values: one reader schema, a framing, and optional semantic validation."""

    def __init__(
        self,
        topic: str,
        schema: SchemaVersion,
        framing: Framing,
        validator: RecordValidator | None = None,
    ) -> None:
        self.topic = topic
        self.schema = schema
        self._framing = framing
        self._validator = validator
        self._parsed = schema.parsed
        self._compiled = compile_writer(self._parsed)
        self._reader = compile_reader(self._parsed)
        self._ts_fields = timestamp_fields(schema.raw)

    def encode(self, record: Mapping[str, Any]) -> bytes:
        """Encode one record; a record that does not fit raises :class:`SerializationError` naming the field."""
        for name in self._ts_fields:
            value = record.get(name)
            if isinstance(value, datetime) and value.tzinfo is None:
                msg = f"{self.schema.name}.{name} must be timezone-aware, got naive {value.isoformat()!r}"
                raise SerializationError(msg)
        if self._validator is not None:
            reason = self._validator(record)
            if reason is not None:
                msg = f"invalid {self.schema.name}: {reason}"
                raise SerializationError(msg)
        return self._framing.frame(self.topic, self.schema, self._body(record))

    def _body(self, record: Mapping[str, Any]) -> bytes:
        if self._compiled is not None:
            try:
                return self._compiled(record)
            except Exception:  # noqa: BLE001, S110 - fastavro below writes it or explains what does not fit
                pass
        buf = io.BytesIO()
        try:
            fastavro.schemaless_writer(buf, self._parsed, dict(record), strict_allow_default=True)
        except Exception as exc:
            raise SerializationError(self._explain(record, exc)) from exc
        return buf.getvalue()

    def _explain(self, record: Mapping[str, Any], exc: Exception) -> str:
        try:
            validate(dict(record), self._parsed, raise_errors=True, strict=True)
        except ValidationError as verr:
            return f"record does not fit schema {self.schema.name!r}: {'; '.join(str(e) for e in verr.errors)}"
        except Exception as vexc:  # noqa: BLE001 - reporting only
            return f"record does not fit schema {self.schema.name!r}: {vexc}"
        return f"record does not fit schema {self.schema.name!r}: {exc}"

    def decode(self, data: bytes | None) -> dict[str, Any]:
        """Decode one message value, resolving its writer schema to this reader schema.

        Raises :class:`DecodeError` with the reason when the bytes are not a valid event.
        """
        if data is None:
            msg = "message has no value (tombstone)"
            raise DecodeError(msg)
        writer, body = self._framing.unframe(self.topic, data)
        record, used = self._read(writer, body)
        if used != len(body):
            msg = f"{len(body) - used} trailing bytes after a {writer.name!r} record"
            raise DecodeError(msg, "schema_mismatch")
        if not isinstance(record, dict):
            msg = f"decoded value is not a record: {record!r}"
            raise DecodeError(msg, "schema_mismatch")
        if self._validator is not None:
            reason = self._validator(record)
            if reason is not None:
                msg = f"invalid {self.schema.name}: {reason}"
                raise DecodeError(msg, "invalid_field")
        return record

    def _read(self, writer: SchemaVersion, body: memoryview) -> tuple[Any, int]:
        """The record in ``body`` and the bytes it used: the compiled reader when ``writer`` is this serde's schema,
        else (or when the compiled reader fails on bad bytes) fastavro, resolving ``writer`` to this schema."""
        same = writer.fingerprint == self.schema.fingerprint
        if same and self._reader is not None:
            try:
                return self._reader(body)
            except Exception:  # noqa: BLE001, S110 - fastavro below decodes it or explains what is wrong
                pass
        stream = io.BytesIO(body)
        try:
            record = fastavro.schemaless_reader(stream, writer.parsed, None if same else self._parsed)
        except Exception as exc:
            msg = f"Avro body does not decode with schema {writer.name!r} v{writer.version}: {exc!r}"
            raise DecodeError(msg, "schema_mismatch") from exc
        return record, stream.tell()
