"""`slipstream infra ...` and `slipstream topics ...`: the local platform and topics as code."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from slipstream.cli.common import build, console, friendly_errors, out
from slipstream.schemas.transport import TopicChange

infra_app = typer.Typer(help="Start, stop and inspect the local Kafka (KRaft) and Redis.", no_args_is_help=True)
topics_app = typer.Typer(help="Topics as code: every topic declared once, applied idempotently.", no_args_is_help=True)

Backend = Annotated[
    str | None,
    typer.Option(
        help="auto (Docker when an engine answers, else local), local or docker.", envvar="SLIPSTREAM_BACKEND"
    ),
]
Prefix = Annotated[
    str | None, typer.Option(help="Namespace prepended to every topic name.", envvar="SLIPSTREAM_TOPIC_PREFIX")
]


@infra_app.command()
def up(backend: Backend = None, topics: Annotated[bool, typer.Option(help="Also apply the topics.")] = True) -> None:
    """Start Kafka 4 (KRaft) and Redis if they are not running, wait until they answer, apply the topics.

    Safe to repeat: running services are reused. Jars are resolved once from Maven Central into the cache.
    """
    with friendly_errors():
        app = build(backend=backend)
        statuses = app.platform.up()
        for status in statuses.values():
            console.print(
                f"[green]✓[/green] {status.name} {status.version or ''} at {status.address} ({status.backend})"
            )
        if topics:
            _print_changes(app.apply_topics())


@infra_app.command()
def down(
    wipe: Annotated[bool, typer.Option(help="Also delete the broker's data (a fresh cluster next time).")] = False,
) -> None:
    """Stop the services that `slipstream infra up` started (and nothing else)."""
    with friendly_errors():
        build().platform.down(wipe=wipe)
        console.print("[green]✓[/green] stopped")


@infra_app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False) -> None:
    """Show whether Kafka and Redis are up, where, and which versions."""
    with friendly_errors():
        app = build()
        report = app.platform.status_json()
        if as_json:
            out.print_json(json.dumps(report))
            return
        table = Table("service", "up", "address", "version", "backend")
        for name, info in report.items():
            address = str(info.get("bootstrap_servers") or info.get("url") or "")
            table.add_row(
                name,
                "yes" if info.get("up") else "no",
                address,
                str(info.get("version") or ""),
                str(info.get("backend") or ""),
            )
        out.print(table)
        if not all(info.get("up") for info in report.values()):
            raise typer.Exit(1)


@topics_app.command("apply")
def topics_apply(prefix: Prefix = None) -> None:
    """Create missing topics, grow partitions and align configs to the declarations. Never deletes."""
    with friendly_errors():
        _print_changes(build(topic_prefix=prefix).apply_topics())


@topics_app.command("list")
def topics_list(prefix: Prefix = None) -> None:
    """The declared topics, and whether each exists on the broker."""
    with friendly_errors():
        app = build(topic_prefix=prefix)
        existing = app.topic_admin().existing()
        table = Table("topic", "partitions", "retention", "cleanup", "key", "value schema", "on broker")
        for spec in app.contracts.catalog:
            name = app.contracts.catalog.prefix + spec.name
            days = "forever" if spec.retention_ms < 0 else f"{spec.retention_ms / 86_400_000:g} d"
            on_broker = f"yes ({existing[name]})" if name in existing else "[red]no[/red]"
            table.add_row(
                name,
                str(spec.partitions),
                days,
                spec.cleanup_policy,
                spec.key_field,
                spec.value_schema or "(internal)",
                on_broker,
            )
        out.print(table)


def _print_changes(changes: list[TopicChange]) -> None:
    for change in changes:
        colour = {"created": "green", "updated": "yellow"}.get(change.action, "dim")
        console.print(f"[{colour}]{change.action:>9}[/{colour}] {change.topic} {change.detail}")
