"""The slice file: a portable, self-describing recording of Kafka records, written as a stream.

A slice is one ZIP file (``.slice``). Its members:

``manifest.json``
    what was recorded, from where and when, and per member its record count, byte size and SHA-256 (written last).
``records/<part>/<topic>/<partition>.avro``
    Avro object container files (deflate blocks), one per part, logical topic and partition; every record keeps its
    key and value bytes, headers, timestamp and timestamp type, partition and offset (:data:`RECORD_SCHEMA`). Parts:
    ``slice`` (the recorded window), ``history`` (what the processors need before it), ``outputs`` (the recorded
    outputs of the window's inputs), ``control`` (``model-events``).
``schemas/<name>.v<version>.avsc``
    every schema a recorded value was written with, by its fingerprint (in the manifest).
``models/<model>/<version>/model.onnx`` and ``card.json``
    the model versions that served the window, so a replay needs no registry.

Avro container files are read by any Avro library (``fastavro``, ``avro-tools tojson``); ZIP by anything. Members are
stored uncompressed in the ZIP: the Avro blocks are already deflated. Nothing is held in memory but one block.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

import fastavro

from slipstream.replay.exceptions import SliceFormatError

FORMAT = "slipstream-slice"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PARTS = ("slice", "history", "outputs", "control")
CODEC = "deflate"

RECORD_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "SliceRecord",
    "namespace": "io.slipstream.replay",
    "doc": "One Kafka record as it was on its topic.",
    "fields": [
        {"name": "topic", "type": "string", "doc": "Logical topic name (without the namespace prefix)."},
        {"name": "partition", "type": "int"},
        {"name": "offset", "type": "long"},
        {"name": "timestamp_ms", "type": "long"},
        {"name": "timestamp_type", "type": "int", "doc": "1 CreateTime, 2 LogAppendTime (librdkafka's numbers)."},
        {"name": "key", "type": ["null", "bytes"]},
        {"name": "value", "type": ["null", "bytes"]},
        {
            "name": "headers",
            "type": {
                "type": "array",
                "items": {
                    "type": "record",
                    "name": "SliceHeader",
                    "fields": [{"name": "key", "type": "string"}, {"name": "value", "type": ["null", "bytes"]}],
                },
            },
        },
    ],
}
_PARSED = fastavro.parse_schema(RECORD_SCHEMA)


@dataclass(frozen=True, slots=True)
class SliceRecord:
    """One recorded Kafka record."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    timestamp_type: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()

    def to_avro(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp_ms": self.timestamp_ms,
            "timestamp_type": self.timestamp_type,
            "key": self.key,
            "value": self.value,
            "headers": [{"key": k, "value": v} for k, v in self.headers],
        }

    @classmethod
    def from_avro(cls, raw: dict[str, Any]) -> SliceRecord:
        headers = tuple((h["key"], h["value"]) for h in raw["headers"])
        return cls(
            raw["topic"],
            raw["partition"],
            raw["offset"],
            raw["timestamp_ms"],
            raw["timestamp_type"],
            raw["key"],
            raw["value"],
            headers,
        )


def member_name(part: str, topic: str, partition: int) -> str:
    if part not in PARTS:
        msg = f"unknown slice part {part!r}; parts: {', '.join(PARTS)}"
        raise SliceFormatError(msg)
    return f"records/{part}/{topic}/{partition}.avro"


class _Hashing:
    """A write-only file that hashes and counts what passes through it."""

    def __init__(self, sink: IO[bytes]) -> None:
        self._sink = sink
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self._sink.write(data)

    def flush(self) -> None:
        self._sink.flush()

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self.size


@dataclass
class MemberInfo:
    records: int
    bytes: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"records": self.records, "bytes": self.bytes, "sha256": self.sha256}


class SliceWriter:
    """Writes a slice member by member; :meth:`close` adds the manifest. A slice without a manifest is incomplete
    and refused by :class:`SliceReader`, so an interrupted recording never passes for a whole one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zip = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        self.members: dict[str, MemberInfo] = {}

    def write_records(self, part: str, topic: str, partition: int, records: Iterable[SliceRecord]) -> MemberInfo:
        """Stream ``records`` into ``records/<part>/<topic>/<partition>.avro``; only the current block is buffered."""
        name = member_name(part, topic, partition)
        count = 0

        def counted() -> Iterator[dict[str, Any]]:
            nonlocal count
            for record in records:
                count += 1
                yield record.to_avro()

        with self._zip.open(name, "w", force_zip64=True) as raw:
            sink = _Hashing(raw)
            fastavro.writer(cast(IO[Any], sink), _PARSED, counted(), codec=CODEC, sync_interval=256 * 1024)
        info = MemberInfo(count, sink.size, sink.sha256.hexdigest())
        self.members[name] = info
        return info

    def write_bytes(self, name: str, data: bytes, *, records: int = 0) -> MemberInfo:
        self._zip.writestr(zipfile.ZipInfo(name), data, compress_type=zipfile.ZIP_DEFLATED)
        info = MemberInfo(records, len(data), hashlib.sha256(data).hexdigest())
        self.members[name] = info
        return info

    def write_json(self, name: str, payload: Any) -> MemberInfo:
        return self.write_bytes(name, json.dumps(payload, indent=1, sort_keys=True).encode())

    def close(self, manifest: dict[str, Any]) -> None:
        body = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            **manifest,
            "members": {n: m.to_dict() for n, m in sorted(self.members.items())},
        }
        self._zip.writestr(
            zipfile.ZipInfo(MANIFEST), json.dumps(body, indent=1, sort_keys=True), compress_type=zipfile.ZIP_DEFLATED
        )
        self._zip.close()

    def abort(self) -> None:
        """Close and delete a slice that could not be completed."""
        try:
            self._zip.close()
        finally:
            self.path.unlink(missing_ok=True)


@dataclass
class SliceReader:
    """Reads a slice; the manifest is checked at open, member checksums by :meth:`verify`."""

    path: Path
    manifest: dict[str, Any] = field(init=False)
    _zip: zipfile.ZipFile = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.path.is_file():
            msg = f"slice {str(self.path)!r} does not exist or is not a file"
            raise SliceFormatError(msg)
        try:
            self._zip = zipfile.ZipFile(self.path)
            self.manifest = json.loads(self._zip.read(MANIFEST))
        except (zipfile.BadZipFile, KeyError, ValueError) as exc:
            msg = f"{str(self.path)!r} is not a complete slice (no readable {MANIFEST}): {exc}"
            raise SliceFormatError(msg) from exc
        if self.manifest.get("format") != FORMAT:
            msg = f"{str(self.path)!r} is not a slice: format {self.manifest.get('format')!r}, expected {FORMAT!r}"
            raise SliceFormatError(msg)
        version = self.manifest.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            msg = f"slice {str(self.path)!r} has format version {version!r}; this release reads up to {FORMAT_VERSION}"
            raise SliceFormatError(msg)

    def names(self) -> list[str]:
        return self._zip.namelist()

    def has(self, name: str) -> bool:
        return name in self.manifest["members"]

    def verify(self) -> None:
        """Every member's size and SHA-256 against the manifest: :class:`SliceFormatError` naming the first bad one."""
        for name, info in self.manifest["members"].items():
            digest, size = hashlib.sha256(), 0
            try:
                with self._zip.open(name) as member:
                    while chunk := member.read(1 << 20):
                        digest.update(chunk)
                        size += len(chunk)
            except (KeyError, zipfile.BadZipFile, OSError) as exc:
                msg = f"slice {str(self.path)!r}: member {name!r} cannot be read: {exc}"
                raise SliceFormatError(msg) from exc
            if size != info["bytes"] or digest.hexdigest() != info["sha256"]:
                msg = (
                    f"slice {str(self.path)!r}: member {name!r} is damaged (sha256 {digest.hexdigest()[:16]}…, "
                    f"{size} bytes; the manifest says {info['sha256'][:16]}…, {info['bytes']} bytes)"
                )
                raise SliceFormatError(msg)

    def read_bytes(self, name: str) -> bytes:
        try:
            return self._zip.read(name)
        except KeyError as exc:
            msg = f"slice {str(self.path)!r} has no member {name!r}"
            raise SliceFormatError(msg) from exc

    def read_json(self, name: str) -> Any:
        return json.loads(self.read_bytes(name))

    def member_records(self, name: str) -> Iterator[SliceRecord]:
        """The records of one member in recorded (offset) order."""
        with self._zip.open(name) as member:
            for raw in fastavro.reader(member):
                assert isinstance(raw, dict)  # noqa: S101 - the writer schema is a record
                yield SliceRecord.from_avro(raw)

    def streams(self, part: str, topic: str | None = None) -> dict[tuple[str, int], str]:
        """``(topic, partition) -> member name`` of one part (of one topic)."""
        prefix = f"records/{part}/"
        out: dict[tuple[str, int], str] = {}
        for name in self.manifest["members"]:
            if not name.startswith(prefix) or not name.endswith(".avro"):
                continue
            logical, _, partition = name[len(prefix) : -len(".avro")].rpartition("/")
            if topic is None or logical == topic:
                out[(logical, int(partition))] = name
        return dict(sorted(out.items()))

    def records(self, part: str, topic: str) -> Iterator[SliceRecord]:
        """Every record of one part and topic, partition by partition; nothing when the slice has none."""
        for name in self.streams(part, topic).values():
            yield from self.member_records(name)

    def topics(self, part: str) -> list[str]:
        return sorted({t for t, _ in self.streams(part)})

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> SliceReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
