"""`slipstream produce`, `slipstream tail` and `slipstream schemas ...`: events on and off the wire."""

from __future__ import annotations

import base64
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from slipstream.cli.common import build, console, friendly_errors, out
from slipstream.cli.inputs import InputSpec, check_input, event_spec, input_specs, reads
from slipstream.cli.options import check_choice, check_number
from slipstream.schemas.compat import Compatibility, check_registry, release
from slipstream.schemas.registry import SchemaRegistry
from slipstream.streams.publish import count_rows, publish_file

schemas_app = typer.Typer(help="Avro contracts: list, check compatibility, release.", no_args_is_help=True)

Prefix = Annotated[
    str | None, typer.Option(help="Namespace prepended to every topic name.", envvar="SLIPSTREAM_TOPIC_PREFIX")
]


def _event_files() -> list[tuple[str, InputSpec]]:
    return [("--file", entry) for kind, entry in input_specs().items() if kind.startswith("events:")]


@reads(_event_files)
def produce(
    topic: Annotated[str, typer.Argument(help="Logical topic name, e.g. transactions (its columns: below).")],
    file: Annotated[
        Path, typer.Option("--file", "-f", help="Events as .parquet, .jsonl or .ndjson, with the topic's columns.")
    ],
    rate: Annotated[
        float | None, typer.Option(help="Events per second (open loop); default: as fast as possible.")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Send at most this many events.")] = None,
    linger_ms: Annotated[float | None, typer.Option(help="Producer linger.ms (batching vs latency).")] = None,
    on_error: Annotated[
        str, typer.Option(help="fail: stop at the first bad row; dead-letter: send it there and go on.")
    ] = "fail",
    assume_utc: Annotated[bool, typer.Option(help="Read naive timestamps in the file as UTC.")] = False,
    prefix: Prefix = None,
) -> None:
    """Publish a file of events to a topic, keyed by entity, encoded with the topic's Avro contract."""
    with friendly_errors():
        check_choice(on_error, ("fail", "dead-letter"), "--on-error")
        logical = topic.removeprefix(prefix) if prefix else topic
        check_input(file, event_spec(logical), "--file", assume_utc=assume_utc)
        if rate is not None:
            check_number(rate, "--rate", gt=0)
        if limit is not None:
            check_number(limit, "--limit", ge=0)
        if linger_ms is not None:
            check_number(linger_ms, "--linger-ms", ge=0)
        app = build(topic_prefix=prefix)
        total = count_rows(file)
        if limit is not None:
            total = min(total, limit)
        producer = app.producer(linger_ms=linger_ms if linger_ms is not None else (20.0 if rate is None else None))
        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console, transient=False) as bar:
            task = bar.add_task(f"→ {app.contracts.topic(topic)}", total=total)
            report = publish_file(
                producer,
                topic,
                file,
                rate=rate,
                limit=limit,
                on_error=on_error,  # type: ignore[arg-type]
                assume_utc=assume_utc,
                progress=lambda n: bar.update(task, completed=n),
            )
        console.print(
            f"[green]✓[/green] sent {report.sent:,} events to {report.topic} in {report.seconds:.2f} s "
            f"({report.events_per_s:,.0f}/s)"
            + (f", {report.dead_lettered:,} dead-lettered" if report.dead_lettered else "")
        )
        for error in report.errors[:5]:
            console.print(f"  [yellow]dead letter:[/yellow] {error}")


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def tail(
    topic: Annotated[str, typer.Argument(help="Logical topic name, e.g. transactions or dead-letter.")],
    from_beginning: Annotated[bool, typer.Option("--from-beginning/--latest", help="Where to start reading.")] = True,
    max_events: Annotated[int | None, typer.Option("--max", help="Stop after this many events.")] = None,
    idle_timeout: Annotated[float | None, typer.Option(help="Stop after this many seconds with no new event.")] = None,
    count: Annotated[
        bool, typer.Option("--count", help="Print only the number of events read (and failures).")
    ] = False,
    prefix: Prefix = None,
) -> None:
    """Read a topic, decode every event with its contract, and print it as a JSON line.

    Undecodable messages are reported on stderr with the reason (they are not re-dead-lettered).
    """
    with friendly_errors():
        app = build(topic_prefix=prefix)
        seen = failed = 0
        last_event = time.monotonic()
        with app.consumer([topic], from_beginning=from_beginning) as consumer:
            while max_events is None or seen < max_events:
                batch = consumer.poll_batch(max_records=5000, timeout=0.5)
                if not len(batch):
                    if idle_timeout is not None and time.monotonic() - last_event > idle_timeout:
                        break
                    continue
                last_event = time.monotonic()
                for event in batch.events:
                    if max_events is not None and seen >= max_events:
                        break
                    seen += 1
                    if not count:
                        line = {"partition": event.partition, "offset": event.offset, "value": event.value}
                        print(orjson.dumps(line, default=_jsonable).decode())
                for failure in batch.failures:
                    failed += 1
                    console.print(
                        f"[red]undecodable[/red] {failure.message.topic}[{failure.message.partition}]"
                        f"@{failure.message.offset}: {failure.reason}"
                    )
        if count:
            out.print_json(
                orjson.dumps({"topic": app.contracts.topic(topic), "events": seen, "failed": failed}).decode()
            )


@schemas_app.command("list")
def schemas_list() -> None:
    """Every contract with its fingerprint and released versions."""
    with friendly_errors():
        registry = SchemaRegistry.load()
        table = Table("schema", "record", "fingerprint", "released")
        for name in registry.names():
            current = registry.get(name)
            versions = ", ".join(f"v{v.version}" for v in registry.versions(name)) or "-"
            table.add_row(name, current.full_name, current.fingerprint.hex(), versions)
        out.print(table)


@schemas_app.command("check")
def schemas_check(
    mode: Annotated[
        Compatibility, typer.Option(help="backward, forward or full (both), against every release.")
    ] = Compatibility.FULL,
) -> None:
    """Fail when a schema change would break readers or writers of a released version."""
    with friendly_errors():
        registry = SchemaRegistry.load()
        issues = check_registry(registry, mode)
        if issues:
            for issue in issues:
                console.print(f"[red]✗[/red] {issue}")
            raise typer.Exit(1)
        console.print(f"[green]✓[/green] {len(registry.names())} schemas compatible ({mode.value}) with their releases")


@schemas_app.command("release")
def schemas_release() -> None:
    """Snapshot each changed schema as its next released version (refused if incompatible)."""
    with friendly_errors():
        written = release(SchemaRegistry.load())
        for path in written:
            console.print(f"[green]released[/green] {path}")
        if not written:
            console.print("nothing to release: every schema equals its last release")
