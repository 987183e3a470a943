"""Encode records to framed Avro bytes and decode them back, turning bad bytes into reasons, not crashes."""

from __future__ import annotations

import io
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
from fastavro.validation import ValidationError, validate

from slipstream.schemas.base import Framing, RecordValidator
from slipstream.schemas.compiled_reader import RecordReader, compile_reader
from slipstream.schemas.compiled_writer import compile_writer
from slipstream.schemas.exceptions import DecodeError, SchemaError, SerializationError
from slipstream.schemas.registry import SchemaVersion

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


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
        return self._decode(data, self._reader, None)

    def projection(self, fields: Collection[str]) -> Callable[[bytes | None], dict[str, Any]]:
        """A decoder of this topic's values returning only ``fields`` (top-level names, kept in schema order), its
        timestamps as epoch microseconds (``int``): for a consumer that reads a few fields of a large record (the
        label join reads a prediction's scores, not its feature map). The bytes of the other fields are walked past,
        not turned into values. The semantic validator runs on the projected record, so ``fields`` must hold the
        fields it checks. Errors are :meth:`decode`'s."""
        names = {f["name"] for f in self.schema.raw["fields"]}
        unknown = sorted(set(fields) - names)
        if unknown:
            msg = f"{self.schema.name} has no fields {unknown}"
            raise SchemaError(msg)
        keep = tuple(f["name"] for f in self.schema.raw["fields"] if f["name"] in fields)
        timestamps = tuple(n for n in self._ts_fields if n in keep)

        def project(record: dict[str, Any]) -> dict[str, Any]:
            out = {name: record[name] for name in keep}
            for name in timestamps:
                value = out[name]
                if isinstance(value, datetime):
                    out[name] = (value - _EPOCH) // _US
            return out

        reader = compile_reader(self._parsed, keep, micros=True)
        return lambda data: self._decode(data, reader, project)

    def _decode(
        self,
        data: bytes | None,
        reader: RecordReader | None,
        project: Callable[[dict[str, Any]], dict[str, Any]] | None,
    ) -> dict[str, Any]:
        if data is None:
            msg = "message has no value (tombstone)"
            raise DecodeError(msg)
        writer, body = self._framing.unframe(self.topic, data)
        value, used, compiled = self._read(writer, body, reader)
        if used != len(body):
            msg = f"{len(body) - used} trailing bytes after a {writer.name!r} record"
            raise DecodeError(msg, "schema_mismatch")
        if not isinstance(value, dict):
            msg = f"decoded value is not a record: {value!r}"
            raise DecodeError(msg, "schema_mismatch")
        record: dict[str, Any] = value if project is None or compiled else project(value)  # fastavro read it all
        if self._validator is not None:
            reason = self._validator(record)
            if reason is not None:
                msg = f"invalid {self.schema.name}: {reason}"
                raise DecodeError(msg, "invalid_field")
        return record

    def _read(self, writer: SchemaVersion, body: memoryview, reader: RecordReader | None) -> tuple[Any, int, bool]:
        """The record in ``body``, the bytes it used and whether ``reader`` read it: ``reader`` (compiled) when
        ``writer`` is this serde's schema, else (or when it fails on bad bytes) fastavro, resolving ``writer`` to this
        schema."""
        same = writer.fingerprint == self.schema.fingerprint
        if same and reader is not None:
            try:
                record, used = reader(body)
                return record, used, True
            except Exception:  # noqa: BLE001, S110 - fastavro below decodes it or explains what is wrong
                pass
        stream = io.BytesIO(body)
        try:
            value = fastavro.schemaless_reader(stream, writer.parsed, None if same else self._parsed)
        except Exception as exc:
            msg = f"Avro body does not decode with schema {writer.name!r} v{writer.version}: {exc!r}"
            raise DecodeError(msg, "schema_mismatch") from exc
        return value, stream.tell(), False
