from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from slipstream.schemas.compat import Compatibility, check_pair, check_registry, ensure_compatible, release
from slipstream.schemas.exceptions import IncompatibleSchemaError
from slipstream.schemas.registry import CURRENT_DIR, RELEASED_DIR, SchemaRegistry

TX: dict[str, Any] = json.loads((CURRENT_DIR / "transaction.avsc").read_text())


def _with_field(field: dict[str, Any]) -> dict[str, Any]:
    schema = copy.deepcopy(TX)
    schema["fields"].append(field)
    return schema


def test_repo_schemas_are_compatible_with_their_releases() -> None:
    ensure_compatible(SchemaRegistry.load())


def test_adding_a_field_with_a_default_is_fully_compatible() -> None:
    new = _with_field({"name": "currency", "type": "string", "default": "EUR"})
    assert check_pair("transaction", new, TX, 1, Compatibility.FULL) == []


def test_adding_a_required_field_breaks_new_readers_of_old_data() -> None:
    new = _with_field({"name": "currency", "type": "string"})
    issues = check_pair("transaction", new, TX, 1, Compatibility.FULL)
    assert [i.direction for i in issues] == ["new reads old"]
    assert "currency" in str(issues[0])


def test_changing_a_type_incompatibly_is_rejected_both_ways() -> None:
    new = copy.deepcopy(TX)
    next(f for f in new["fields"] if f["name"] == "amount")["type"] = "string"
    issues = check_pair("transaction", new, TX, 1, Compatibility.FULL)
    assert {i.direction for i in issues} == {"new reads old", "old reads new"}


def test_type_promotion_is_backward_but_not_forward_compatible() -> None:
    old = copy.deepcopy(TX)
    next(f for f in old["fields"] if f["name"] == "amount")["type"] = "float"
    assert check_pair("transaction", TX, old, 1, Compatibility.BACKWARD) == []
    assert check_pair("transaction", TX, old, 1, Compatibility.FORWARD) != []


def _copy_repo_schemas(tmp_path: Path) -> tuple[Path, Path]:
    current, released = tmp_path / "avro", tmp_path / "released"
    shutil.copytree(CURRENT_DIR, current)
    shutil.copytree(RELEASED_DIR, released)
    return current, released


def test_a_deliberately_breaking_change_is_rejected_and_not_released(tmp_path: Path) -> None:
    current, released = _copy_repo_schemas(tmp_path)
    broken = _with_field({"name": "merchant_country", "type": "string"})  # no default
    (current / "transaction.avsc").write_text(json.dumps(broken))
    registry = SchemaRegistry.load(current, released)
    assert [i.schema for i in check_registry(registry)] == ["transaction"]
    with pytest.raises(IncompatibleSchemaError, match="transaction: current schema vs released v1"):
        release(registry, released)
    assert not (released / "transaction" / "v2.avsc").exists()


def test_a_compatible_change_is_released_as_the_next_version(tmp_path: Path) -> None:
    current, released = _copy_repo_schemas(tmp_path)
    (current / "transaction.avsc").write_text(json.dumps(_with_field({"name": "mcc", "type": "int", "default": 0})))
    written = release(SchemaRegistry.load(current, released), released)
    assert written == [str(released / "transaction" / "v2.avsc")]
    registry = SchemaRegistry.load(current, released)
    assert [v.version for v in registry.versions("transaction")] == [1, 2]
    assert release(registry, released) == []


def test_old_data_decodes_with_the_new_schema(tmp_path: Path) -> None:
    """A message written with released v1 is resolved by fingerprint and read with the current schema."""
    from slipstream.schemas.framing import SingleObjectFraming
    from slipstream.schemas.serde import AvroSerde
    from tests.samples import sample

    current, released = _copy_repo_schemas(tmp_path)
    (current / "transaction.avsc").write_text(json.dumps(_with_field({"name": "mcc", "type": "int", "default": 0})))
    registry = SchemaRegistry.load(current, released)
    framing = SingleObjectFraming(registry)
    old = AvroSerde("transactions", registry.versions("transaction")[0], framing)
    new = AvroSerde("transactions", registry.get("transaction"), framing)
    assert new.decode(old.encode(sample("transaction"))) == sample("transaction") | {"mcc": 0}
