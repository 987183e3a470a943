"""`slipstream features ...`: the online engine, the Feast repository, and online/offline parity."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.live import Live
from rich.table import Table

from slipstream.cli.common import build, console, friendly_errors, out
from slipstream.cli.inputs import (
    InputsCommand,
    InputSpec,
    beside,
    check_input,
    check_output_dir,
    input_specs,
    reads,
    spec,
)
from slipstream.cli.inputs import feature_set as known_feature_set
from slipstream.cli.metrics import MetricsPortOpt, check_metrics_port, serve_metrics
from slipstream.cli.options import check_choices, check_number
from slipstream.exceptions import InputError
from slipstream.features.definitions import feature_sets
from slipstream.features.feast_repo import apply_repo
from slipstream.streams.engine.app import EngineJob, run_processes, run_threads, stage_groups, stage_list
from slipstream.streams.engine.runner import StageStats
from slipstream.streams.engine.settings import RUNTIMES

if TYPE_CHECKING:
    from slipstream.features.base import FeatureSet

features_app = typer.Typer(
    help="Streaming features: run the engine, apply the Feast repo, verify parity.", no_args_is_help=True
)

FeatureSetOpt = Annotated[
    str, typer.Option("--feature-set", "-s", help="A feature set of features/definitions: fraud, reco, …")
]


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


RuntimeOpt = Annotated[
    str | None,
    typer.Option(
        help="What hosts the stages: kafka (confluent-kafka consumer groups) or faust (a Faust app per stage "
        "worker); default SLIPSTREAM_ENGINE_RUNTIME or kafka. Same results on both.",
    ),
]


def _runtime(value: str | None) -> str | None:
    """``--runtime``: one of the engine's runtimes, checked before anything starts (None: the settings')."""
    if value is not None and len(check_choices(value, RUNTIMES, "--runtime")) != 1:
        msg = f"--runtime: one runtime, got {value!r}"
        raise InputError(msg)
    return value


@features_app.command("run")
def run(
    feature_set: FeatureSetOpt = "fraud",
    stages: Annotated[str | None, typer.Option(help="Comma-separated stages to run here (default: all).")] = None,
    threads: Annotated[
        bool, typer.Option("--threads/--processes", help="Stages in threads of one process, or one process each.")
    ] = False,
    until_idle: Annotated[
        float | None,
        typer.Option(
            help="Stop once the input got nothing new for this many seconds and every stage, in order, has committed "
            "all of it (docs/scale-out.md)."
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option(help="Workers per stage here, sharing its partitions (at most its partition count).")
    ] = 1,
    quiet: Annotated[bool, typer.Option(help="No live table.")] = False,
    runtime: RuntimeOpt = None,
    metrics_port: MetricsPortOpt = None,
) -> None:
    """Run the online feature engine: exact event-time windows from Kafka into Feast's Redis layout and the
    feature log; stop with Ctrl-C. A stage's workers (--workers, and more processes of the same command, here or on
    other hosts) share its partitions; a rebalance hands them over exactly. With SLIPSTREAM_WORKER_ID a worker is a
    static member that takes its partitions back at once after a restart (each command needs its own id). A worker
    that dies stops the run with its error."""
    from slipstream.streams.engine.topology import topology_for

    with friendly_errors():
        chosen = known_feature_set(feature_set)
        if stages is not None:
            check_choices(stages, [s.name for s in topology_for(chosen).stages], "--stages")
        if until_idle is not None:
            check_number(until_idle, "--until-idle", gt=0)
        check_number(workers, "--workers", ge=1)
        check_metrics_port(metrics_port)
        app = build(engine_runtime=_runtime(runtime))
        app.ensure_platform()
        job = EngineJob(app.engine_settings(), app.settings.topic_prefix, feature_set, stage_list(stages), workers)
        metrics = serve_metrics(app, "features", metrics_port)
        if metrics is not None:
            for stage in stage_groups(job, app.contracts):
                metrics.watch_lag(app.kafka, stage.group, stage.topics)
        stop = threading.Event()
        latest: dict[str, StageStats] = {}
        started = time.monotonic()
        runner = run_threads if threads else run_processes
        with Live(console=console, refresh_per_second=2, transient=quiet) as live:

            def on_batch(stage: str, stats: StageStats) -> None:
                latest[stage] = stats
                if metrics is not None:
                    metrics.engine(feature_set, stage, stats)
                if not quiet:
                    live.update(_stats_table(feature_set, latest, started))

            try:
                final = runner(job, stop, until_idle_s=until_idle, on_batch=on_batch)
            except KeyboardInterrupt:
                stop.set()
                final = latest
            finally:
                if metrics is not None:
                    metrics.close()
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


def _labels_option(given: Path | None) -> str:
    return "--labels" if given is not None else "--labels (default: beside --events)"


def _progress(text: str) -> None:
    """Progress on stderr, also with --json (stdout carries only the report)."""
    console.print(text, style="dim", highlight=False, markup=False, soft_wrap=True)


def _verify_files() -> list[tuple[str, InputSpec]]:
    return [("--events", spec("verify:transactions")), ("--labels", spec("verify:labels"))]


@features_app.command("verify", cls=InputsCommand)
@reads(_verify_files)
def verify_command(
    events: Annotated[Path, typer.Option(help="Transactions parquet (columns below).")],
    days: Annotated[float | None, typer.Option(help="Only the first N days of the log (> 0).")] = None,
    labels: Annotated[
        Path | None, typer.Option(help="Labels parquet (columns below); default: X.labels.parquet beside X.parquet.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    workers: Annotated[
        int, typer.Option(help="Engine workers per stage (processes sharing the stage's partitions).")
    ] = 1,
    chaos: Annotated[
        str | None,
        typer.Option(
            help="Disrupt the run mid-stream, comma-separated, in this order at 25/50/75 % of the first stage's "
            "input: kill (SIGKILL a worker of the first stage; needs --workers >= 2), join (add a worker to the "
            "last stage), broker (stop the Kafka broker leading most input partitions for 5 s, then start it; "
            "needs the local platform with 3 brokers, SLIPSTREAM_KAFKA_BROKERS=3). Example: kill,join,broker."
        ),
    ] = None,
    keep: Annotated[
        bool,
        typer.Option(
            help="Keep the run's topics, Redis keys and Feast repo afterwards; the report says which. "
            "Default: everything the run created is removed, also when it fails or is interrupted."
        ),
    ] = False,
    runtime: RuntimeOpt = None,
) -> None:
    """Online/offline parity: stream the log through Kafka and the engine, compare the feature log and the online
    store (through Feast's SDK) with the offline engine. Exits 1 on any mismatch (counts exact, reals within 1e-9).

    The run is a throwaway namespace: topics under <SLIPSTREAM_TOPIC_PREFIX>verify-<tag>., the Feast project
    verify_<tag> in a Feast repository of its own (never the one `features apply` wrote). Any record on its
    dead-letter topic also fails the run (the log is clean input).

    With --chaos the stages run as --workers processes each that are killed, joined and lose a broker on a plan
    fixed before the run; the comparison is the same."""
    from slipstream.chaos import ChaosError, parse_chaos
    from slipstream.verify import VerifyConfig, verify

    with friendly_errors():
        check_input(events, spec("verify:transactions"), "--events")
        check_input(labels or beside(events, "labels"), spec("verify:labels"), _labels_option(labels))
        if days is not None:
            check_number(days, "--days", gt=0)
        check_number(workers, "--workers", ge=1)
        app = build(engine_runtime=_runtime(runtime))
        brokers = None if app.external else app.platform_config.brokers
        try:
            plan = parse_chaos(chaos, workers=workers, brokers=brokers) if chaos is not None else None
        except ChaosError as exc:  # a bad option: exit 2 like every other, before anything starts
            raise InputError(str(exc)) from exc
        if not app.external:
            app.platform.up()
        report = verify(app, VerifyConfig(events, labels, days, keep, workers, plan), _progress)
        if as_json:
            out.print_json(json.dumps(report))
        else:
            for key, value in report.items():
                out.print(f"{key:>28}: {value}")
        failed = ("mismatches", "online_mismatches", "missing_vectors", "dead_letter_topic_records")
        if any(report[key] for key in failed):
            raise typer.Exit(1)


def _backfill_files() -> list[tuple[str, InputSpec]]:
    entries = []
    for name, chosen in feature_sets().items():
        topics = [k.removeprefix(f"{name}:") for k in input_specs() if k.startswith(f"{name}:")]
        for topic in sorted(topics, key=lambda t: t != chosen.trigger):  # the trigger's file first
            option = "--events" if topic == chosen.trigger else "--labels" if topic == "labels" else "beside"
            entries.append((f"{option} (-s {name})", spec(f"{name}:{topic}")))
    return entries


def backfill_files(chosen: FeatureSet, events: Path, labels: Path | None) -> dict[str, Path]:
    """Per topic the feature set reads, its file, checked: ``--events`` for the trigger topic, ``--labels`` (default
    beside: ``X.labels.parquet``) for labels, ``X.<topic>.parquet`` beside the events for any other topic."""
    files: dict[str, Path] = {}
    topics = [k.removeprefix(f"{chosen.name}:") for k in input_specs() if k.startswith(f"{chosen.name}:")]
    for topic in sorted(topics, key=lambda t: t != chosen.trigger):  # --events first
        kind = f"{chosen.name}:{topic}"
        if topic == chosen.trigger:
            option, path = "--events", events
        elif topic == "labels":
            option, path = _labels_option(labels), labels or beside(events, topic)
        else:
            option, path = f"{topic} events (beside --events)", beside(events, topic)
        files[topic] = check_input(path, spec(kind), option)
    return files


@reads(_backfill_files)
def backfill(
    events: Annotated[Path, typer.Option(help="The feature set's trigger events (-s fraud: transactions), parquet.")],
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Where to write (default SLIPSTREAM_OFFLINE_DIR).")
    ] = None,
    feature_set: FeatureSetOpt = "fraud",
    labels: Annotated[
        Path | None, typer.Option(help="Labels parquet (-s fraud); default: X.labels.parquet beside X.parquet.")
    ] = None,
) -> None:
    """Compute every feature of an event log offline (vectorised, point-in-time correct) and write Feast file
    sources (one parquet per view) plus the per-event feature vectors, for training sets and parity checks.

    A feature set reading more topics than its trigger finds each beside the events: X.<topic>.parquet."""
    import pandas as pd

    from slipstream.features.offline import compute_offline, write_offline

    with friendly_errors():
        chosen = known_feature_set(feature_set)
        files = backfill_files(chosen, events, labels)
        app = build()
        target = check_output_dir(out_dir or app.settings.offline_dir, "--out")
        frames: dict[str, pd.DataFrame] = {topic: pd.read_parquet(path) for topic, path in files.items()}
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
