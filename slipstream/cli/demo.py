"""`slipstream demo`: the main job, end to end as far as Slipstream goes today."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.live import Live
from rich.table import Table

from slipstream.cli.common import build, console, friendly_errors
from slipstream.cli.simulate import simulate_fraud_file
from slipstream.demo import DemoStats, run_demo


def _table(stats: DemoStats) -> Table:
    table = Table(title="Slipstream demo: card transactions → Kafka → contract-checked reader", min_width=70)
    table.add_column("metric")
    table.add_column("value", justify="right")
    rate = stats.consumed / stats.elapsed if stats.elapsed > 0 else 0.0
    table.add_row("transactions sent / planned", f"{stats.sent:,} / {stats.planned:,}")
    table.add_row("transactions read back", f"{stats.consumed:,}")
    table.add_row("throughput (read)", f"{rate:,.0f} events/s")
    table.add_row("produce → read latency p50 / p99", f"{stats.percentile(50):.1f} / {stats.percentile(99):.1f} ms")
    table.add_row("poison messages injected", f"{stats.poisoned:,}")
    reasons = ", ".join(f"{k}: {v}" for k, v in stats.reasons.items()) or "-"
    table.add_row("dead-lettered (reasons)", f"{stats.dead_lettered:,} ({reasons})")
    return table


def demo(
    days: Annotated[float, typer.Option(help="How many simulated days of traffic to stream.")] = 1.0,
    rate: Annotated[float, typer.Option(help="Events per second (open loop).")] = 2000.0,
    poison_every: Annotated[int, typer.Option(help="Inject a truncated message after every N events (0: none).")] = 500,
    data: Annotated[Path, typer.Option(help="Simulated transactions (made once, then reused).")] = Path(
        ".slipstream/data/fraud.parquet"
    ),
) -> None:
    """Start Kafka + Redis, simulate the Fraud Handbook's card traffic (once), stream it live at a fixed rate,
    read it back through the Avro contracts, dead-letter poison messages with reasons, and summarise."""
    with friendly_errors():
        app = build()
        if not app.external:
            for status in app.platform.up().values():
                console.print(f"[green]✓[/green] {status.name} {status.version or ''} at {status.address}")
        app.apply_topics()
        console.print(f"[green]✓[/green] topics applied ({len(app.contracts.catalog.specs)} declared)")
        if not data.exists():
            console.print(f"simulating the Fraud Detection Handbook data set (once; cached in {data})…")
            n, frauds = simulate_fraud_file(data)
            console.print(f"[green]✓[/green] {n:,} transactions, {frauds:,} frauds")
        with Live(console=console, refresh_per_second=4) as live:
            stats = run_demo(
                app, data, days=days, rate=rate, poison_every=poison_every, render=lambda s: live.update(_table(s))
            )
        lost = stats.sent + stats.poisoned - stats.consumed - stats.dead_lettered
        colour = "green" if lost == 0 else "red"
        console.print(
            f"[{colour}]{'✓' if lost == 0 else '✗'}[/{colour}] {stats.sent:,} sent, {stats.consumed:,} read, "
            f"{stats.dead_lettered:,} dead-lettered, {lost} lost. "
            "Inspect the dead letters with: slipstream tail dead-letter --max 5"
        )
        if lost:
            raise typer.Exit(1)
