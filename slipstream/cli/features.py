"""`slipstream features ...`: the online engine, the Feast repository, and online/offline parity."""

from __future__ import annotations

import threading
import time
from typing import Annotated

import typer
from rich.live import Live
from rich.table import Table

from features.definitions import FEATURE_SETS
from features.feast_repo import apply_repo
from slipstream.cli.common import build, console, friendly_errors
from streams.engine.app import EngineJob, run_processes, run_threads, stage_list
from streams.engine.runner import StageStats

features_app = typer.Typer(
    help="Streaming features: run the engine, apply the Feast repo, verify parity.", no_args_is_help=True
)

FeatureSetOpt = Annotated[str, typer.Option("--feature-set", "-s", help="fraud or reco.")]


def _stats_table(feature_set: str, stats: dict[str, StageStats], started: float) -> Table:
    elapsed = max(time.monotonic() - started, 1e-9)
    table = Table(title=f"feature engine: {feature_set}")
    for column in ("stage", "consumed", "events/s", "applied", "dupes", "dead letters", "vectors", "rows", "restored"):
        table.add_column(column, justify="right" if column != "stage" else "left")
    for stage, s in stats.items():
        table.add_row(
            stage,
            f"{s.consumed:,}",
            f"{s.consumed / elapsed:,.0f}",
            f"{s.applied:,}",
            f"{s.duplicates:,}",
            f"{s.dead_lettered:,}",
            f"{s.vectors:,}",
            f"{s.rows_written:,}",
            f"{s.restored_keys:,}",
        )
    return table


@features_app.command("run")
def run(
    feature_set: FeatureSetOpt = "fraud",
    stages: Annotated[str | None, typer.Option(help="Comma-separated stages to run here (default: all).")] = None,
    threads: Annotated[
        bool, typer.Option("--threads/--processes", help="Stages in threads of one process, or one process each.")
    ] = False,
    until_idle: Annotated[float | None, typer.Option(help="Stop after this many seconds without input.")] = None,
    quiet: Annotated[bool, typer.Option(help="No live table.")] = False,
) -> None:
    """Run the online feature engine: exact event-time windows from Kafka into Feast's Redis layout and the
    feature log. Start more workers (same command) to share partitions; stop with Ctrl-C."""
    with friendly_errors():
        app = build()
        app.ensure_platform()
        job = EngineJob(app.engine_settings(), app.settings.topic_prefix, feature_set, stage_list(stages))
        stop = threading.Event()
        latest: dict[str, StageStats] = {}
        started = time.monotonic()
        runner = run_threads if threads else run_processes
        with Live(console=console, refresh_per_second=2, transient=quiet) as live:

            def on_batch(stage: str, stats: StageStats) -> None:
                latest[stage] = stats
                if not quiet:
                    live.update(_stats_table(feature_set, latest, started))

            try:
                final = runner(job, stop, until_idle_s=until_idle, on_batch=on_batch)
            except KeyboardInterrupt:
                stop.set()
                final = latest
        console.print(_stats_table(feature_set, final or latest, started))


@features_app.command("apply")
def apply(
    project: Annotated[str | None, typer.Option(help="Feast project (default SLIPSTREAM_FEAST_PROJECT).")] = None,
) -> None:
    """Generate the Feast repository from the feature definitions and run Feast's apply (idempotent)."""
    with friendly_errors():
        app = build()
        config = app.feast_config(project)
        started = time.perf_counter()
        store = apply_repo(config, list(FEATURE_SETS.values()))
        views = store.list_feature_views()
        console.print(
            f"[green]✓[/green] applied {len(views)} feature views to Feast project {config.project!r} "
            f"({config.repo_dir}) in {time.perf_counter() - started:.1f} s"
        )
