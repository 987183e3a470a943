"""What the commands read, checked before they do any work: paths, formats, columns and option values.

Every kind of input file has an entry in :func:`input_specs`: the suffixes it may have and its columns with their
types, derived from the Avro contracts (``schemas/avro``) and the feature definitions (the columns the offline
engine reads of each topic), so a stream added to the contracts or a feature set added to the definitions is
covered without editing this file. A check reads a parquet file's schema (its footer) or a JSON-lines file's first
record, never the data.

A failed check raises :class:`~slipstream.exceptions.InputError` with one line naming the option and the file, the
column or the value; :func:`~slipstream.cli.common.friendly_errors` prints it and exits 2, the code of Typer's own
usage errors, before any topic, key or file has been created. (Exit 1 stays what it was: the work itself failed.)

:class:`InputsCommand` appends to a command's ``--help`` the columns of every file it reads, as declared with
:func:`reads`; the text is built when help is shown, so importing the CLI reads no schema file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from rich.markup import escape
from typer.core import TyperCommand

from slipstream.exceptions import InputError

if TYPE_CHECKING:
    import pyarrow as pa

    from slipstream.features.base import FeatureSet

__all__ = [
    "Column",
    "InputSpec",
    "InputsCommand",
    "beside",
    "check_input",
    "check_output_dir",
    "check_output_file",
    "event_spec",
    "feature_set",
    "input_specs",
    "reads",
    "spec",
]

# timestamp: a time column, or integer epoch microseconds; datetime: a time column only (pandas arithmetic on it)
Family = Literal["integer", "number", "boolean", "string", "timestamp", "datetime", "any"]
PARQUET: tuple[str, ...] = (".parquet",)
EVENT_FILES: tuple[str, ...] = (".parquet", ".jsonl", ".ndjson")  # what `produce` reads (streams/publish.py)
_AVRO_FAMILIES: Mapping[str, Family] = {
    "long": "integer",
    "int": "integer",
    "double": "number",
    "float": "number",
    "boolean": "boolean",
    "string": "string",
}
_SHOWN_COLUMNS = 12  # of a file's own columns, in a message about a missing one


@dataclass(frozen=True, slots=True)
class Column:
    """One expected column: its name, its type as shown (``long``, ``timestamp`` …) and the arrow types it takes."""

    name: str
    type: str
    family: Family
    required: bool = True

    def __str__(self) -> str:
        return f"{self.name} {self.type}"


@dataclass(frozen=True, slots=True)
class InputSpec:
    """One kind of input file: what it holds, the suffixes it may have, and its columns."""

    what: str
    columns: tuple[Column, ...]
    suffixes: tuple[str, ...] = PARQUET

    def describe(self) -> str:
        """One line for ``--help``: ``transactions (.parquet): transaction_id long, …; optional: …``."""
        required = ", ".join(str(c) for c in self.columns if c.required)
        optional = ", ".join(str(c) for c in self.columns if not c.required)
        return f"{self.what} ({'/'.join(self.suffixes)}): {required}" + (f"; optional: {optional}" if optional else "")

    def times_as_datetimes(self) -> InputSpec:
        """This spec with its time columns required as time columns (no integer microseconds)."""
        columns = tuple(
            Column(c.name, "timestamp (tz-aware)", "datetime", c.required) if c.family == "timestamp" else c
            for c in self.columns
        )
        return InputSpec(self.what, columns, self.suffixes)

    def plus(self, *columns: Column, what: str | None = None) -> InputSpec:
        """This spec with more columns (a column named twice keeps its first declaration, made required if either
        is)."""
        merged = {c.name: c for c in self.columns}
        for column in columns:
            known = merged.setdefault(column.name, column)
            if column.required and not known.required:
                merged[column.name] = Column(known.name, known.type, known.family, required=True)
        return InputSpec(what or self.what, tuple(merged.values()), self.suffixes)


# ---------------------------------------------------------------------------------------------- the table of inputs
def _column(field: Mapping[str, Any]) -> Column:
    """An Avro record field as a column: required unless the contract gives it a default."""
    types = field["type"] if isinstance(field["type"], list) else [field["type"]]
    branch = next((t for t in types if t != "null"), "null")
    family: Family = "any"
    if isinstance(branch, dict):
        if str(branch.get("logicalType", "")).startswith("timestamp"):
            shown, family = "timestamp", "timestamp"
        elif branch.get("type") == "enum":
            shown, family = "|".join(branch["symbols"]), "string"
        else:
            shown = str(branch.get("type"))
    else:
        shown = str(branch)
        family = _AVRO_FAMILIES.get(shown, "any")
    if "null" in types:
        shown += " or null"
    return Column(field["name"], shown, family, required="default" not in field)


@cache
def _contracts() -> dict[str, InputSpec]:
    """Per topic with an Avro contract: its events as the contract has them (any file ``produce`` takes)."""
    from slipstream.schemas.registry import SchemaRegistry
    from slipstream.schemas.topics import TopicCatalog

    registry = SchemaRegistry.load()
    return {
        spec.name: InputSpec(
            f"{spec.name} events", tuple(_column(f) for f in registry.get(spec.value_schema).raw["fields"]), EVENT_FILES
        )
        for spec in TopicCatalog()
        if spec.value_schema is not None
    }


def _feature_inputs(chosen: FeatureSet) -> dict[str, InputSpec]:
    """Per topic a feature set reads: the columns the offline engine needs of it, typed by the topic's contract."""
    from slipstream.features.offline.inputs import plan_topics

    contracts = _contracts()
    out: dict[str, InputSpec] = {}
    for topic, plan in plan_topics(chosen).items():
        typed = {c.name: c for c in contracts[topic].columns} if topic in contracts else {}
        columns = tuple(
            Column(name, typed[name].type, typed[name].family)
            if name in typed
            else Column(name, "timestamp", "timestamp")
            if name in plan.time_columns
            else Column(name, "any", "any")
            for name in plan.columns
        )
        out[topic] = InputSpec(f"{topic} events", columns, PARQUET)
    return out


@cache
def input_specs() -> Mapping[str, InputSpec]:
    """Every kind of input file by name, built once from the contracts and the feature definitions:

    * ``events:<topic>``: a topic's events as its contract has them (``produce``: parquet or JSON lines);
    * ``<feature set>:<topic>``: what a feature set reads of a topic (``backfill``);
    * ``verify:<topic>``: both, for ``features verify`` (it publishes the events, then computes them offline);
    * ``training:transactions``, ``training:labels``: the fraud model's inputs (``train``, ``evaluate``,
      ``bench features``): the contract columns, plus the simulator's ground truth ``tx_fraud`` (0/1) on
      transactions, which no topic carries (``models/dataset.py``).
    """
    from slipstream.features.definitions import FRAUD, feature_sets

    contracts = _contracts()
    table: dict[str, InputSpec] = {f"events:{topic}": spec for topic, spec in contracts.items()}
    for chosen in feature_sets().values():
        for topic, spec in _feature_inputs(chosen).items():
            table[f"{chosen.name}:{topic}"] = spec
    for topic, spec in _feature_inputs(FRAUD).items():
        base = InputSpec(spec.what, contracts[topic].columns, PARQUET) if topic in contracts else spec
        table[f"verify:{topic}"] = base.plus(*spec.columns)
    truth = Column("tx_fraud", "0/1", "boolean")
    table["training:transactions"] = table["verify:transactions"].plus(truth, what="transactions with tx_fraud")
    table["training:labels"] = table["verify:labels"]
    for kind in [k for k in table if k.startswith(("verify:", "training:"))]:  # read with pandas time arithmetic
        table[kind] = table[kind].times_as_datetimes()
    return table


def spec(kind: str) -> InputSpec:
    """The entry ``kind`` of :func:`input_specs`."""
    table = input_specs()
    found = table.get(kind)
    if found is None:
        msg = f"no input kind {kind!r}; known: {', '.join(table)}"
        raise KeyError(msg)
    return found


def beside(events: Path, topic: str) -> Path:
    """Where another topic's events sit next to an event log: ``X.parquet`` -> ``X.<topic>.parquet`` (the simulator
    writes its labels there)."""
    return events.with_name(f"{events.stem}.{topic}.parquet")


def event_spec(topic: str, option: str = "TOPIC") -> InputSpec:
    """The columns of ``topic``'s events (its Avro contract), or an :class:`InputError` naming the topics that have
    one."""
    table = input_specs()
    found = table.get(f"events:{topic}")
    if found is None:
        known = ", ".join(k.removeprefix("events:") for k in table if k.startswith("events:"))
        msg = f"{option}: {topic!r} has no event contract; topics that take events: {known}"
        raise InputError(msg)
    return found


def feature_set(name: str, option: str = "--feature-set") -> FeatureSet:
    """The feature set called ``name``, or an :class:`InputError` listing the known ones."""
    from slipstream.features.definitions import feature_sets

    known = feature_sets()
    if name not in known:
        msg = f"{option}: unknown feature set {name!r}; known: {', '.join(known)}"
        raise InputError(msg)
    return known[name]


# ------------------------------------------------------------------------------------------------------ the checks
def _fits(arrow_type: pa.DataType, family: Family) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if family == "any" or pa.types.is_null(arrow_type):  # an all-null column: the values decide, not the type
        return True
    integer = bool(pa.types.is_integer(arrow_type))
    return {
        "integer": integer,
        "number": integer or bool(pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type)),
        "boolean": integer or bool(pa.types.is_boolean(arrow_type)),
        "string": bool(pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)),
        "timestamp": integer or bool(pa.types.is_timestamp(arrow_type)),
        "datetime": bool(pa.types.is_timestamp(arrow_type)),
    }[family]


def _quoted(path: Path) -> str:
    return repr(str(path))


def _check_path(path: Path, option: str, suffixes: Sequence[str]) -> None:
    if not path.exists():
        msg = f"{option}: {_quoted(path)} does not exist"
        raise InputError(msg)
    if path.is_dir():
        msg = f"{option}: {_quoted(path)} is a directory, not a file"
        raise InputError(msg)
    if not os.access(path, os.R_OK):
        msg = f"{option}: {_quoted(path)} is not readable (permission denied)"
        raise InputError(msg)
    _check_suffix(path, option, suffixes)


def _check_suffix(path: Path, option: str, suffixes: Sequence[str]) -> None:
    if path.suffix.lower() not in suffixes:
        suffix = repr(path.suffix) if path.suffix else "no suffix"
        msg = f"{option}: {_quoted(path)} must be a {' or '.join(suffixes)} file, it has {suffix}"
        raise InputError(msg)


def _missing(option: str, path: Path, input_spec: InputSpec, have: Sequence[str]) -> None:
    missing = [c.name for c in input_spec.columns if c.required and c.name not in have]
    if missing:
        shown = ", ".join(have[:_SHOWN_COLUMNS]) + (", …" if len(have) > _SHOWN_COLUMNS else "")
        names = ", ".join(repr(m) for m in missing)
        plural = "s" if len(missing) > 1 else ""
        msg = f"{option}: {_quoted(path)} lacks column{plural} {names} ({input_spec.what}); it has: {shown or 'none'}"
        raise InputError(msg)


def _check_parquet(path: Path, option: str, input_spec: InputSpec, assume_utc: bool | None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        msg = f"{option}: {_quoted(path)} is not a readable parquet file ({reason})"
        raise InputError(msg) from exc
    _missing(option, path, input_spec, schema.names)
    for column in input_spec.columns:
        if column.name not in schema.names:
            continue
        arrow_type = schema.field(column.name).type
        if not _fits(arrow_type, column.family):
            msg = f"{option}: {_quoted(path)}: column {column.name!r} is {arrow_type}, expected {column.type}"
            raise InputError(msg)
        if column.family in ("timestamp", "datetime") and pa.types.is_timestamp(arrow_type) and arrow_type.tz is None:
            if not assume_utc:
                hint = "; write them timezone-aware" + (" or pass --assume-utc" if assume_utc is not None else "")
                msg = f"{option}: {_quoted(path)}: column {column.name!r} holds naive timestamps{hint}"
                raise InputError(msg)


def _check_json_lines(path: Path, option: str, input_spec: InputSpec) -> None:
    number, line = 0, b""
    with path.open("rb") as handle:
        while not line.strip():
            line = handle.readline()
            number += 1
            if not line:
                return  # an empty file: nothing to send, nothing wrong
    try:
        first = json.loads(line)
    except ValueError as exc:
        msg = f"{option}: {_quoted(path)} line {number} is not valid JSON ({exc})"
        raise InputError(msg) from exc
    if not isinstance(first, dict):
        msg = f"{option}: {_quoted(path)} line {number} is not a JSON object"
        raise InputError(msg)
    _missing(option, path, input_spec, list(first))


def check_input(path: Path, input_spec: InputSpec, option: str, *, assume_utc: bool | None = None) -> Path:
    """Refuse a missing, unreadable or wrongly suffixed file, or one lacking a required column or holding a column
    of the wrong type; return ``path``. Timestamps must be timezone-aware unless ``assume_utc`` (``None``: the
    command has no such option)."""
    _check_path(path, option, input_spec.suffixes)
    if path.suffix.lower() == ".parquet":
        _check_parquet(path, option, input_spec, assume_utc)
    else:
        _check_json_lines(path, option, input_spec)
    return path


def _nearest_existing(path: Path) -> Path:
    for parent in (path, *path.absolute().parents):
        if parent.exists():
            return parent
    return Path("/")


def check_output_dir(path: Path, option: str) -> Path:
    """A directory to write into: existing, or creatable under a writable parent."""
    if path.exists() and not path.is_dir():
        msg = f"{option}: {_quoted(path)} exists and is not a directory"
        raise InputError(msg)
    base = _nearest_existing(path)
    if not base.is_dir():
        msg = f"{option}: cannot create {_quoted(path)}: {_quoted(base)} is not a directory"
        raise InputError(msg)
    if not os.access(base, os.W_OK):
        msg = f"{option}: cannot write into {_quoted(base)} (permission denied)"
        raise InputError(msg)
    return path


def check_output_file(path: Path, option: str, suffixes: Sequence[str] = PARQUET) -> Path:
    """A file to write: the right suffix, not a directory, its directory existing or creatable."""
    _check_suffix(path, option, suffixes)
    if path.is_dir():
        msg = f"{option}: {_quoted(path)} is a directory, not a file"
        raise InputError(msg)
    check_output_dir(path.parent, option)
    return path


# -------------------------------------------------------------------------------------------------------- --help
Described = Callable[[], Sequence[tuple[str, InputSpec]]]
_READS = "__slipstream_reads__"


def reads(describe: Described) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare the files a command reads, as (option, spec) pairs, for its ``--help`` (see :class:`InputsCommand`).

    ``describe`` runs only when help is shown."""

    def mark(command: Callable[..., Any]) -> Callable[..., Any]:
        setattr(command, _READS, describe)
        return command

    return mark


def help_text(entries: Sequence[tuple[str, InputSpec]]) -> str:
    lines = ["[b]Input files[/b] (checked from their schema before any work starts):"]
    lines += [f"  {escape(option)}: {escape(entry.describe())}" for option, entry in entries]
    families = {c.family for _, entry in entries for c in entry.columns}
    if "timestamp" in families:
        lines.append("  A timestamp is timezone-aware, or an integer of epoch microseconds.")
    if "datetime" in families:
        lines.append("  A timestamp (tz-aware) is a timezone-aware time column: integers are not taken there.")
    return "\n".join(lines)


class InputsCommand(TyperCommand):
    """A command whose ``--help`` ends with the columns of every file it reads, as declared with :func:`reads`."""

    def format_help(self, ctx: Any, formatter: Any) -> None:  # Any: typer's vendored click types are private
        describe: Described | None = getattr(self.callback, _READS, None)
        if describe is not None and not self.epilog:
            self.epilog = help_text(describe())
        super().format_help(ctx, formatter)
