"""`slipstream features ...`: the online engine, the Feast repository, and online/offline parity."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.live import Live
from rich.table import Table

from slipstream.cli.common import build, console, friendly_errors, out
from slipstream.features.definitions import feature_sets
from slipstream.features.feast_repo import apply_repo
from slipstream.streams.engine.app import EngineJob, run_processes, run_threads, stage_list
from slipstream.streams.engine.runner import StageStats

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
        store = apply_repo(config, list(feature_sets().values()))
        views = store.list_feature_views()
        console.print(
            f"[green]✓[/green] applied {len(views)} feature views to Feast project {config.project!r} "
            f"({config.repo_dir}) in {time.perf_counter() - started:.1f} s"
        )


@features_app.command("verify")
def verify_command(
    events: Annotated[Path, typer.Option(help="Transactions parquet (labels beside it as X.labels.parquet).")],
    days: Annotated[float | None, typer.Option(help="Only the first N days of the log.")] = None,
    labels: Annotated[Path | None, typer.Option(help="Labels parquet, if not beside the events.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    keep: Annotated[bool, typer.Option(help="Keep the throwaway topics afterwards.")] = False,
) -> None:
    """Online/offline parity: stream the log through Kafka and the engine, compare the feature log and the online
    store (through Feast's SDK) with the offline engine. Exits 1 on any mismatch (counts exact, reals within 1e-9)."""
    from slipstream.verify import VerifyConfig, verify

    with friendly_errors():
        app = build()
        app.ensure_platform()
        report = verify(app, VerifyConfig(events, labels, days, keep), (lambda _m: None) if as_json else console.print)
        if as_json:
            out.print_json(json.dumps(report))
        else:
            for key, value in report.items():
                out.print(f"{key:>28}: {value}")
        if report["mismatches"] or report["online_mismatches"] or report["missing_vectors"]:
            raise typer.Exit(1)


def backfill(
    events: Annotated[Path, typer.Option(help="Event log: transactions parquet (labels beside it), or interactions.")],
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Where to write (default SLIPSTREAM_OFFLINE_DIR).")
    ] = None,
    feature_set: FeatureSetOpt = "fraud",
    labels: Annotated[Path | None, typer.Option(help="Labels parquet, if not beside the events.")] = None,
) -> None:
    """Compute every feature of an event log offline (vectorised, point-in-time correct) and write Feast file
    sources (one parquet per view) plus the per-event feature vectors, for training sets and parity checks."""
    import pandas as pd

    from slipstream.features.offline import compute_offline, write_offline

    with friendly_errors():
        app = build()
        target = out_dir or app.settings.offline_dir
        chosen = feature_sets().get(feature_set)
        if chosen is None:
            msg = f"unknown feature set {feature_set!r}; known: {', '.join(feature_sets())}"
            raise typer.BadParameter(msg, param_hint="--feature-set")
        frames: dict[str, pd.DataFrame] = {chosen.trigger: pd.read_parquet(events)}
        if chosen.name == "fraud":
            label_file = labels or events.with_name(events.stem + ".labels.parquet")
            frames["labels"] = pd.read_parquet(label_file)
        started = time.perf_counter()
        result = compute_offline(chosen, frames, progress=lambda m: console.print(f"[dim]{m}[/dim]"))
        written = write_offline(result, target)
        elapsed = time.perf_counter() - started
        n_events = sum(len(f) for f in frames.values())
        for name, path in written.items():
            console.print(f"  {name:<28} → {path}")
        console.print(
            f"[green]✓[/green] {n_events:,} events → {len(result.vectors):,} vectors in {elapsed:.1f} s "
            f"({n_events / elapsed:,.0f} events/s)"
        )
