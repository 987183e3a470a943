"""`slipstream record` and `slipstream replay`: a window of production into a slice file, and back through the same
engine and scorer on a throwaway platform, with a diff report."""

from __future__ import annotations

import json
import signal
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from slipstream.cli.common import build, console, friendly_errors, out
from slipstream.exceptions import InputError

record_app = typer.Typer(
    help="Record a window of production into a slice file (`record --from --to --out`), or summarise one "
    "(`record inspect SLICE`).",
    invoke_without_command=True,
    no_args_is_help=False,
)


class Backend(StrEnum):
    auto = "auto"
    testcontainers = "testcontainers"
    local = "local"


@contextmanager
def _progress() -> Any:
    """A Rich progress bar per task name; the callback the recorder and the replay report to."""
    tasks: dict[str, TaskID] = {}
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as bars:

        def report(task: str, done: int, total: int | None) -> None:
            if task not in tasks:
                tasks[task] = bars.add_task(task, total=total)
            bars.update(tasks[task], completed=done, total=total)

        yield report


def _sigterm_as_interrupt() -> None:
    """SIGTERM unwinds like Ctrl-C, so the throwaway platform and every process are removed on the way out."""

    def handler(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


@record_app.callback()
def record(
    ctx: typer.Context,
    topics: Annotated[
        str,
        typer.Option(
            help="Logical topics to record, comma-separated. A feature set's trigger (transactions) brings every "
            "source of that set (labels); the scorer's outputs of the recorded inputs (predictions) come along."
        ),
    ] = "transactions",
    from_: Annotated[
        str | None,
        typer.Option("--from", help="Window start (Kafka timestamps): ISO 8601 with a zone, 'now' or '-10m'."),
    ] = None,
    to: Annotated[str, typer.Option("--to", help="Window end (exclusive), same forms as --from.")] = "now",
    out_path: Annotated[Path | None, typer.Option("--out", help="The slice file to write (.slice).")] = None,
    settle: Annotated[
        float, typer.Option(help="Seconds to wait for outputs of the window's last inputs (a lagging scorer).")
    ] = 5.0,
    history: Annotated[
        bool, typer.Option(help="Record the history the feature engine needs to rebuild its state at --from.")
    ] = True,
) -> None:
    """Record a window of production — every record's key, value, headers, timestamp, partition and offset — with
    what a replay needs: the history the feature engine rebuilds its state from (each source back as far as a
    window reaches from the first scored event), the scorer's outputs of the window's inputs, `model-events` and
    the model versions that served, the schemas, topic configs and partition counts. One portable file: a ZIP of
    Avro container files and a manifest with counts and SHA-256 checksums (docs/replay.md)."""
    if ctx.invoked_subcommand is not None:
        return
    with friendly_errors():
        from slipstream.features.definitions import feature_sets
        from slipstream.replay.exceptions import ReplayError
        from slipstream.replay.record import Recorder, RecordPlan
        from slipstream.replay.when import parse_when

        if from_ is None or out_path is None:
            msg = "record needs --from and --out (e.g. --from -5m --out incident.slice); see --help"
            raise InputError(msg)
        now = datetime.now(UTC)
        try:
            plan = RecordPlan(
                tuple(t.strip() for t in topics.split(",") if t.strip()),
                parse_when(from_, "--from", now),
                parse_when(to, "--to", now),
                settle_s=settle,
                history=history,
            )
        except ReplayError as exc:
            raise InputError(str(exc)) from exc
        if out_path.suffix != ".slice":
            msg = f"--out {str(out_path)!r}: a slice file ends in .slice"
            raise InputError(msg)
        app = build()
        s = app.settings
        note = {
            "lateness_s": s.lateness_s,
            "fraud_model": s.fraud_model,
            "reco_model": s.reco_model,
            "feast_project": s.feast_project,
        }
        with _progress() as report:
            recorder = Recorder(
                app.contracts,
                app.kafka,
                feature_sets(),
                lateness_s=s.lateness_s,
                registry=app.model_registry,
                settings_note=note,
                progress=report,
            )
            try:
                recorder.check(plan)
            except ReplayError as exc:
                raise InputError(str(exc)) from exc
            _sigterm_as_interrupt()
            manifest = recorder.record(plan, out_path)
        counts = ", ".join(f"{t} {v['records']:,}" for t, v in manifest["topics"].items())
        history_n = sum(v["records"] for v in manifest.get("history", {}).get("topics", {}).values())
        console.print(f"[green]recorded[/green] {out_path}: window {counts}; history {history_n:,}")


@record_app.command("inspect")
def inspect(
    slice_path: Annotated[Path, typer.Argument(help="A .slice file.")],
    verify: Annotated[bool, typer.Option(help="Also check every member's SHA-256 against the manifest.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """What a slice holds: its window and source, records per topic, the history and whether retention still had
    all of it, matched outputs, the models included and which version served when."""
    with friendly_errors():
        from slipstream.replay.exceptions import SliceFormatError
        from slipstream.replay.slice_file import SliceReader
        from slipstream.replay.summary import summarize

        try:
            reader = SliceReader(slice_path)
        except SliceFormatError as exc:
            raise InputError(str(exc)) from exc
        with reader:
            if verify:
                reader.verify()
            summary = summarize(reader)
        summary["verified"] = verify
        if as_json:
            out.print_json(json.dumps(summary, default=str))
            return
        from rich.table import Table

        table = Table(title=f"slice {slice_path.name}", show_header=False)
        for key in ("window", "source", "topics", "history", "outputs", "models", "serving", "records", "bytes"):
            table.add_row(
                key, json.dumps(summary[key], default=str) if not isinstance(summary[key], int) else f"{summary[key]:,}"
            )
        table.add_row("checksums", "verified" if verify else "not checked (--verify)")
        out.print(table)


def replay(
    slice_path: Annotated[Path, typer.Argument(help="A .slice file written by `slipstream record`.")],
    model: Annotated[
        str | None, typer.Option(help="Score everything with this fraud model version (a what-if, not a reproduction).")
    ] = None,
    challenger: Annotated[
        str | None,
        typer.Option(help="Also backtest this version: score deltas, flips, metrics from the slice's labels."),
    ] = None,
    speed: Annotated[str, typer.Option(help="'max' (as fast as it goes) or N: N times the recorded pace.")] = "max",
    backend: Annotated[
        Backend, typer.Option(help="Throwaway platform: testcontainers when a Docker engine answers (auto), or local.")
    ] = Backend.auto,
    tolerance: Annotated[
        float, typer.Option(help="Largest |difference| of a score or feature that still counts as equal.")
    ] = 1e-9,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Directory for replay.json, replay.html, predictions.jsonl.")
    ] = None,
    offline_check: Annotated[
        bool,
        typer.Option(
            help="Also compute the window's features with the offline engine from the slice and say which side — "
            "recorded or replayed — differs from them (which one is right when a reproduction differs)."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Replay a slice through the same feature engine and Kafka scorer on a throwaway Kafka + Redis (testcontainers
    when a Docker engine answers, else the local launcher on free ports): restore the state from the recorded
    history, publish the window, and compare every prediction with the recorded one — score, decision, features,
    model version. Exits 1 when a reproduction differs beyond the tolerance. The platform is removed afterwards,
    also on Ctrl-C and on failure."""
    with friendly_errors():
        from slipstream.replay.diff import Tolerance
        from slipstream.replay.exceptions import ReplayMismatch, SliceFormatError, ToleranceError
        from slipstream.replay.report import write_reports
        from slipstream.replay.run import ReplayOptions, replay_slice
        from slipstream.replay.slice_file import SliceReader

        if model is not None and challenger is not None:
            msg = "--model and --challenger are exclusive: a backtest compares a challenger with the recorded champion"
            raise InputError(msg)
        if speed != "max":
            try:
                pace: float | None = float(speed)
            except ValueError:
                pace = None
            if pace is None or not pace > 0:
                msg = f"--speed {speed!r}: 'max' or a number > 0"
                raise InputError(msg)
        else:
            pace = None
        try:
            SliceReader(slice_path).close()
            tol = Tolerance(tolerance, tolerance, tolerance)
        except (SliceFormatError, ToleranceError) as exc:
            raise InputError(str(exc)) from exc
        app = build()
        options = ReplayOptions(
            backend=backend.value,
            model=model,
            challenger=challenger,
            speed=pace,
            tolerance=tol,
            start_engine=True,
            offline_check=offline_check,
        )
        _sigterm_as_interrupt()
        with _progress() as report:
            result = replay_slice(slice_path, options, app.settings, registry=app.model_registry, progress=report)
        target = out_dir or Path(f"replay-{slice_path.stem}")
        paths = write_reports(result, target)
        if as_json:
            out.print_json(json.dumps(result.to_dict(), default=str))
        s = result.summary
        console.print(
            f"{result.mode} on {result.backend}: {s.matched:,} of {s.recorded:,} recorded predictions matched; "
            f"{s.failing:,} differ beyond ±{tolerance:g}; reports in {paths['html'].parent}/"
        )
        if result.offline is not None:
            rec, rep = result.offline["recorded"], result.offline["replayed"]
            console.print(
                f"offline engine: recorded features differ from it in {rec['differ']:,} of {rec['checked']:,} "
                f"predictions, replayed in {rep['differ']:,} of {rep['checked']:,}"
            )
        if not result.ok:
            msg = f"{s.failing:,} predictions differ (see {paths['html']})"
            raise ReplayMismatch(msg)
