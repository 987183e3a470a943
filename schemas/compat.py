"""Schema evolution rules: a change must not break readers or writers of any released version.

``BACKWARD``: the new schema can read everything written with released versions (consumers upgrade first).
``FORWARD``: released readers can read what the new schema writes (producers upgrade first).
``FULL`` (the default): both, against every released version (transitive), because on a Kafka topic old and
new producers and consumers coexist during a rollout and replays read months-old data.
The resolution rules are Apache Avro's own (``avro.compatibility``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, cast

from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from avro.schema import Schema, parse

from slipstream.schemas.exceptions import IncompatibleSchemaError, SchemaError
from slipstream.schemas.registry import RELEASED_DIR, SchemaRegistry


class Compatibility(StrEnum):
    BACKWARD = "backward"
    FORWARD = "forward"
    FULL = "full"


@dataclass(frozen=True, slots=True)
class CompatibilityIssue:
    schema: str
    against_version: int
    direction: str  # "new reads old" or "old reads new"
    messages: tuple[str, ...]

    def __str__(self) -> str:
        detail = "; ".join(self.messages) or "incompatible"
        return f"{self.schema}: current schema vs released v{self.against_version} ({self.direction}): {detail}"


def _avro(raw: Mapping[str, Any]) -> Schema:
    return parse(json.dumps(dict(raw)))


def _check(reader: Schema, writer: Schema) -> tuple[str, ...] | None:
    checker = cast(Any, ReaderWriterCompatibilityChecker)()  # avro ships no annotations for it
    result = checker.get_compatibility(reader, writer)
    if result.compatibility is SchemaCompatibilityType.compatible:
        return None
    return tuple(sorted(result.messages))


def check_pair(
    name: str, new: Mapping[str, Any], old: Mapping[str, Any], old_version: int, mode: Compatibility
) -> list[CompatibilityIssue]:
    """Issues between a proposed schema and one released version of it."""
    new_s, old_s = _avro(new), _avro(old)
    issues = []
    if mode in (Compatibility.BACKWARD, Compatibility.FULL):
        messages = _check(reader=new_s, writer=old_s)
        if messages is not None:
            issues.append(CompatibilityIssue(name, old_version, "new reads old", messages))
    if mode in (Compatibility.FORWARD, Compatibility.FULL):
        messages = _check(reader=old_s, writer=new_s)
        if messages is not None:
            issues.append(CompatibilityIssue(name, old_version, "old reads new", messages))
    return issues


def check_registry(registry: SchemaRegistry, mode: Compatibility = Compatibility.FULL) -> list[CompatibilityIssue]:
    """Check every current schema against all of its released versions."""
    issues: list[CompatibilityIssue] = []
    for name in registry.names():
        current = registry.get(name)
        for released in registry.versions(name):
            issues.extend(check_pair(name, current.raw, released.raw, released.version, mode))
    return issues


def ensure_compatible(registry: SchemaRegistry, mode: Compatibility = Compatibility.FULL) -> None:
    issues = check_registry(registry, mode)
    if issues:
        msg = "incompatible schema changes:\n" + "\n".join(f"  - {issue}" for issue in issues)
        raise IncompatibleSchemaError(msg)


def release(
    registry: SchemaRegistry, released_dir: Path = RELEASED_DIR, mode: Compatibility = Compatibility.FULL
) -> list[str]:
    """Snapshot every current schema that differs from its last released version as ``v<N+1>.avsc``.

    Refuses (nothing written) when any change is incompatible. Returns the files written.
    """
    ensure_compatible(registry, mode)
    written = []
    for name in registry.names():
        current = registry.get(name)
        versions = registry.versions(name)
        if versions and versions[-1].fingerprint == current.fingerprint:
            continue
        if current.path is None:
            msg = f"schema {name!r} has no source file to release"
            raise SchemaError(msg)
        target = released_dir / name / f"v{(versions[-1].version + 1) if versions else 1}.avsc"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(current.path, target)
        written.append(str(target))
    return written
