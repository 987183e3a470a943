"""Wire framings: Avro single-object encoding (the default) and the Confluent wire format.

Single-object encoding (Avro spec): ``C3 01`` + the schema's 8-byte little-endian CRC-64-AVRO fingerprint + body.
The schemas in this repo are the registry: any released or current version is found by its fingerprint.

Confluent wire format: ``00`` + 4-byte big-endian schema id from a Confluent-compatible schema registry + body.
Schemas are registered under the subject ``<topic>-value`` (TopicNameStrategy) on first use.
"""

from __future__ import annotations

import functools
import json
import struct
import threading
from typing import Any, Protocol

from slipstream.schemas.exceptions import DecodeError, SchemaError, SchemaNotFoundError
from slipstream.schemas.registry import SchemaRegistry, SchemaVersion, fingerprint64

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
_SO_HEADER = len(SINGLE_OBJECT_MAGIC) + 8
_CONFLUENT_HEADER = struct.Struct(">bI")


class SingleObjectFraming:
    """Avro single-object encoding, resolving fingerprints against this repo's schemas."""

    name = "single-object"

    def __init__(self, registry: SchemaRegistry) -> None:
        self._registry = registry

    def frame(self, topic: str, schema: SchemaVersion, body: bytes) -> bytes:
        return SINGLE_OBJECT_MAGIC + schema.fingerprint + body

    def unframe(self, topic: str, data: bytes) -> tuple[SchemaVersion, memoryview]:
        if len(data) < _SO_HEADER or data[:2] != SINGLE_OBJECT_MAGIC:
            head = bytes(data[:10]).hex()
            msg = f"not an Avro single-object message (expected marker c301, got {head!r}, {len(data)} bytes)"
            raise DecodeError(msg)
        fp = bytes(data[2:_SO_HEADER])
        try:
            writer = self._registry.by_fp(fp)
        except SchemaNotFoundError as exc:
            msg = f"message written with unknown schema fingerprint {fp.hex()}"
            raise DecodeError(msg) from exc
        return writer, memoryview(data)[_SO_HEADER:]


class SchemaRegistryClient(Protocol):
    """The part of confluent_kafka.schema_registry.SchemaRegistryClient that the framing uses."""

    def register_schema(self, subject_name: str, schema: Any) -> int: ...

    def get_schema(self, schema_id: int) -> Any: ...


@functools.cache
def _client_for(url: str) -> SchemaRegistryClient:
    """One registry client (one connection pool, one cache of ids) per URL per process, whatever the number of
    contracts objects built over it."""
    from confluent_kafka.schema_registry import SchemaRegistryClient as _Client

    client: SchemaRegistryClient = _Client({"url": url})
    return client


class ConfluentFraming:
    """Confluent wire format against a schema registry (``schema_registry_url`` in settings)."""

    name = "confluent"

    def __init__(self, registry: SchemaRegistry, client: SchemaRegistryClient) -> None:
        self._registry = registry
        self._client = client
        self._ids: dict[tuple[str, bytes], int] = {}
        self._writers: dict[int, SchemaVersion] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, registry: SchemaRegistry, url: str) -> ConfluentFraming:
        return cls(registry, _client_for(url))

    def frame(self, topic: str, schema: SchemaVersion, body: bytes) -> bytes:
        key = (topic, schema.fingerprint)
        schema_id = self._ids.get(key)
        if schema_id is None:
            from confluent_kafka.schema_registry import Schema

            with self._lock:
                try:
                    schema_id = self._client.register_schema(
                        f"{topic}-value", Schema(json.dumps(dict(schema.raw)), "AVRO")
                    )
                except Exception as exc:
                    msg = f"cannot register schema {schema.name!r} for subject '{topic}-value': {exc}"
                    raise SchemaError(msg) from exc
                self._ids[key] = schema_id
                self._writers[schema_id] = schema
        return _CONFLUENT_HEADER.pack(0, schema_id) + body

    def unframe(self, topic: str, data: bytes) -> tuple[SchemaVersion, memoryview]:
        if len(data) < _CONFLUENT_HEADER.size or data[0] != 0:
            head = bytes(data[:10]).hex()
            msg = f"not a Confluent wire-format message (expected magic byte 00, got {head!r})"
            raise DecodeError(msg)
        _, schema_id = _CONFLUENT_HEADER.unpack_from(data)
        writer = self._writers.get(schema_id)
        if writer is None:
            writer = self._fetch(schema_id)
        return writer, memoryview(data)[_CONFLUENT_HEADER.size :]

    def _fetch(self, schema_id: int) -> SchemaVersion:
        try:
            fetched = self._client.get_schema(schema_id)
            raw = json.loads(fetched.schema_str)
        except Exception as exc:
            msg = f"schema id {schema_id} cannot be fetched from the schema registry: {exc}"
            raise DecodeError(msg) from exc
        known = self._registry.by_fingerprint.get(fingerprint64(raw))
        writer = known or SchemaVersion(str(raw.get("name", schema_id)), -1, raw)
        self._writers[schema_id] = writer
        return writer
