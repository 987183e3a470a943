"""`slipstream demo`: the main job, end to end as far as Slipstream goes today."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table

from slipstream.cli.common import build, console, friendly_errors
from slipstream.cli.simulate import simulate_fraud_file
from slipstream.demo import DemoStats, run_demo


def _view(stats: DemoStats) -> Group:
    table = Table(
        title="Slipstream: card transactions → Kafka → feature engine → Feast/Redis + feature log", min_width=78
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    rate = stats.vectors / stats.elapsed if stats.elapsed > 0 else 0.0
    table.add_row("transactions sent / planned", f"{stats.sent:,} / {stats.planned:,}")
    table.add_row("frauds among them (ground truth)", f"{stats.frauds_sent:,}")
    table.add_row("feature vectors on the feature log", f"{stats.vectors:,} ({rate:,.0f}/s)")
    table.add_row("produced → vector latency p50 / p99", f"{stats.percentile(50):.1f} / {stats.percentile(99):.1f} ms")
    table.add_row("poison messages injected / dead-lettered", f"{stats.poisoned:,} / {stats.dead_lettered:,}")
    for stage, s in stats.stages.items():
        table.add_row(f"stage {stage}", f"{s.applied:,} applied, {s.rows_written:,} Redis rows")
    sample = Table(title="latest customer, read back from Redis (Feast layout)", min_width=78)
    sample.add_column("feature")
    sample.add_column("value", justify="right")
    for name, value in list(stats.sample.items())[:7]:
        sample.add_row(name, f"{value:,.2f}" if isinstance(value, float) else str(value))
    return Group(table, sample)


def demo(
    days: Annotated[float, typer.Option(help="How many simulated days of traffic to stream.")] = 1.0,
    rate: Annotated[float, typer.Option(help="Events per second (open loop).")] = 1000.0,
    poison_every: Annotated[int, typer.Option(help="Inject a truncated message after every N events (0: none).")] = 500,
    data: Annotated[Path, typer.Option(help="Simulated transactions (made once, then reused).")] = Path(
        ".slipstream/data/fraud.parquet"
    ),
    keep: Annotated[bool, typer.Option(help="Keep this run's topics (demo-<time>.*) afterwards.")] = False,
) -> None:
    """Start Kafka + Redis, apply the Feast repo, run the feature engine, stream the Fraud Handbook's simulated card
    traffic live (with poison messages), and watch exact features arrive on the feature log and in Redis."""
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
        console.print("starting the feature engine (one process per stage)…")
        with Live(console=console, refresh_per_second=4) as live:
            stats = run_demo(
                app,
                data,
                days=days,
                rate=rate,
                poison_every=poison_every,
                render=lambda s: live.update(_view(s)),
                keep=keep,
            )
        missing = stats.sent - stats.vectors
        ok = missing <= 0 and stats.dead_lettered >= stats.poisoned
        colour = "green" if ok else "red"
        console.print(
            f"[{colour}]{'✓' if ok else '✗'}[/{colour}] {stats.sent:,} sent, {stats.vectors:,} feature vectors, "
            f"{stats.dead_lettered:,} dead-lettered (run with --keep, then `slipstream tail` the demo-* topics)"
        )
        if not ok:
            raise typer.Exit(1)
