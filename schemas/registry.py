"""The schemas in this repository, acting as the schema registry.

``schemas/avro/<name>.avsc`` is the current version of each contract; ``schemas/released/<name>/v<N>.avsc``
are the versions that have been released (and may still sit in topics). Every version is addressable by its
CRC-64-AVRO fingerprint, which is what Avro single-object encoding puts in front of each message, so a reader
can always find the schema a message was written with and resolve it to the current one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from slipstream.schemas.exceptions import SchemaError, SchemaNotFoundError

PACKAGE_DIR = Path(__file__).resolve().parent
CURRENT_DIR = PACKAGE_DIR / "avro"
RELEASED_DIR = PACKAGE_DIR / "released"
_VERSION_FILE = re.compile(r"^v(\d+)\.avsc$")


def fingerprint64(schema: Mapping[str, Any] | str) -> bytes:
    """The 8-byte little-endian CRC-64-AVRO fingerprint of a schema's parsing canonical form."""
    canonical = to_parsing_canonical_form(schema if isinstance(schema, str) else dict(schema))
    return bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))


@dataclass(frozen=True)
class SchemaVersion:
    """One version of one contract: its name, version number (0 = current, unreleased), and schema."""

    name: str
    version: int
    raw: Mapping[str, Any]
    path: Path | None = None

    @cached_property
    def parsed(self) -> dict[str, Any]:
        parsed = fastavro.parse_schema(dict(self.raw), _write_hint=False)
        if not isinstance(parsed, dict):
            msg = f"schema {self.name!r} must be an Avro record"
            raise SchemaError(msg)
        return parsed

    @cached_property
    def fingerprint(self) -> bytes:
        return fingerprint64(dict(self.raw))

    @property
    def full_name(self) -> str:
        return f"{self.raw.get('namespace', '')}.{self.raw['name']}".lstrip(".")


def load_schema_file(path: Path) -> dict[str, Any]:
    """Read and parse one ``.avsc`` file; the error names the file and what is wrong with it."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        msg = f"cannot read schema file {path}: {exc}"
        raise SchemaError(msg) from exc
    if not isinstance(raw, dict):
        msg = f"schema file {path} must hold a JSON object (an Avro record), got {type(raw).__name__}"
        raise SchemaError(msg)
    try:
        fastavro.parse_schema(dict(raw), _write_hint=False)
    except Exception as exc:
        msg = f"schema file {path} is not a valid Avro schema: {exc}"
        raise SchemaError(msg) from exc
    return raw


@dataclass(frozen=True)
class SchemaRegistry:
    """Every contract in a schemas directory, current and released, by name and by fingerprint."""

    current: Mapping[str, SchemaVersion]
    released: Mapping[str, tuple[SchemaVersion, ...]] = field(default_factory=dict)

    @classmethod
    def load(cls, current_dir: Path = CURRENT_DIR, released_dir: Path = RELEASED_DIR) -> SchemaRegistry:
        current: dict[str, SchemaVersion] = {}
        for path in sorted(current_dir.glob("*.avsc")):
            current[path.stem] = SchemaVersion(path.stem, 0, load_schema_file(path), path)
        if not current:
            msg = f"no schemas (*.avsc) found in {current_dir}"
            raise SchemaError(msg)
        released: dict[str, tuple[SchemaVersion, ...]] = {}
        if released_dir.is_dir():
            for sub in sorted(p for p in released_dir.iterdir() if p.is_dir()):
                versions = []
                for path in sub.glob("v*.avsc"):
                    match = _VERSION_FILE.match(path.name)
                    if match is None:
                        msg = f"released schema file {path} must be named v<N>.avsc"
                        raise SchemaError(msg)
                    versions.append(SchemaVersion(sub.name, int(match.group(1)), load_schema_file(path), path))
                released[sub.name] = tuple(sorted(versions, key=lambda v: v.version))
        return cls(current=current, released=released)

    def names(self) -> list[str]:
        return sorted(self.current)

    def get(self, name: str) -> SchemaVersion:
        try:
            return self.current[name]
        except KeyError:
            msg = f"unknown schema {name!r}; known: {', '.join(self.names())}"
            raise SchemaNotFoundError(msg) from None

    def versions(self, name: str) -> tuple[SchemaVersion, ...]:
        """Released versions of ``name``, oldest first (empty if never released)."""
        return tuple(self.released.get(name, ()))

    def all_versions(self) -> Iterator[SchemaVersion]:
        yield from self.current.values()
        for versions in self.released.values():
            yield from versions

    @cached_property
    def by_fingerprint(self) -> Mapping[bytes, SchemaVersion]:
        table: dict[bytes, SchemaVersion] = {}
        for version in self.all_versions():
            table.setdefault(version.fingerprint, version)
        return table

    def by_fp(self, fp: bytes) -> SchemaVersion:
        try:
            return self.by_fingerprint[fp]
        except KeyError:
            msg = f"no known schema has fingerprint {fp.hex()}"
            raise SchemaNotFoundError(msg) from None
