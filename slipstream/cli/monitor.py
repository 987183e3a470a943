"""`slipstream monitor` and `slipstream report`: realised (and estimated) performance per model version and role."""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from rich.live import Live
from rich.table import Table

from slipstream.cli.common import build, console, friendly_errors, out
from slipstream.cli.options import check_choice, check_number
from slipstream.exceptions import InputError

if TYPE_CHECKING:  # the figures need pandas: loaded by the commands that compute them, not by every command
    from slipstream.monitoring.performance import PerformanceBook

PERIODS = ("day", "week", "all")  # monitoring.figures.PERIODS; a unit test keeps the two equal

Prefix = Annotated[
    str | None, typer.Option(help="Namespace prepended to every topic name.", envvar="SLIPSTREAM_TOPIC_PREFIX")
]
RetainDays = Annotated[
    float | None,
    typer.Option(
        help="Reduce ISO weeks that ended more than this many event-time days ago to their figures (bounds memory; "
        "keep it above the label horizon). Default: keep every prediction."
    ),
]


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def summary_table(summary: dict[str, Any]) -> Table:
    """One row per model version, role and period: counts, coverage, realised and estimated figures, flips."""
    table = Table(title="realised performance per model version (estimated = label-free CBPE, awaiting labels)")
    columns = ("model", "version", "role", "period", "seen", "labelled", "coverage", "mature", "AUC", "AP", "P", "R")
    for name in (*columns, "est. AP", "flip rate", "delay p50 h"):
        table.add_column(name, justify="left" if name in columns[:4] else "right")
    for row in summary["performance"]:
        estimated = (row["estimated"] or {}).get("average_precision")
        trusted = (row["calibration"] or {}).get("trusted", False)
        table.add_row(
            row["model_name"],
            row["model_version"],
            row["role"],
            row["key"],
            str(row["seen"]),
            str(row["labelled"]),
            _fmt(row["label_coverage"], 2),
            "yes" if row["mature"] else "no",
            _fmt(row["auc_roc"]),
            _fmt(row["average_precision"]),
            _fmt(row["precision"]),
            _fmt(row["recall"]),
            _fmt(estimated) + ("" if estimated is None or trusted else " (untrusted)"),
            _fmt(row["flip_rate"]),
            _fmt((row["label_delay_hours"] or {}).get("p50"), 1),
        )
    extra = [f"labels without prediction {summary['labels_without_prediction']}"]
    if summary["join_lag_s"] is not None:
        extra.append(f"join lag {summary['join_lag_s']:.0f} s (event time)")
    if sum(summary["duplicates"].values()):
        extra.append(f"duplicates ignored {sum(summary['duplicates'].values())}")
    if summary["rejected"]:
        extra.append(f"rejected {summary['rejected']}")
    for rank in summary["rankings"]:
        if rank["period"] == "all":
            extra.append(
                f"{rank['model_name']} v{rank['challenger_version']} vs v{rank['champion_version']}: "
                f"overlap@k {rank['mean_overlap_at_k']:.3f}, tau {rank['mean_kendall_tau']:.3f}, "
                f"ndcg {rank['mean_ndcg_at_k']:.3f}"
            )
    table.caption = "; ".join(extra)
    return table


def _json(summary: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()


def monitor(
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON instead of a table.")] = False,
    follow: Annotated[bool, typer.Option("--follow", help="Keep reading and refresh (Ctrl-C stops).")] = False,
    by: Annotated[str, typer.Option("--by", help="Period of the rows: day, week or all (event time, UTC).")] = "all",
    metrics_port: Annotated[
        int | None,
        typer.Option(help="With --follow: serve Prometheus /metrics on SLIPSTREAM_METRICS_HOST (127.0.0.1):PORT."),
    ] = None,
    refresh: Annotated[float, typer.Option(help="With --follow: seconds between refreshes.")] = 2.0,
    retain_days: RetainDays = None,
    prefix: Prefix = None,
) -> None:
    """Realised performance per model version and role, read from predictions, shadow comparisons and outcomes:
    label coverage, AUC, AP, precision and recall at the model's threshold, a label-free estimate for the
    predictions awaiting labels, flip rate of challengers, label delay."""
    with friendly_errors():
        check_choice(by, PERIODS, "--by")
        check_number(refresh, "--refresh", gt=0)
        if retain_days is not None:
            check_number(retain_days, "--retain-days", gt=0)
        if metrics_port is not None:
            if not follow:
                msg = f"--metrics-port {metrics_port}: needs --follow (metrics are served while following)"
                raise InputError(msg)
            if not 0 < metrics_port < 65536:
                msg = f"--metrics-port: {metrics_port!r} is not a TCP port (1..65535)"
                raise InputError(msg)
        from slipstream.monitoring.metrics import MonitorMetrics
        from slipstream.monitoring.monitor import read_book

        app = build(topic_prefix=prefix)
        from slipstream.monitoring.performance import PerformanceBook

        book = PerformanceBook(retain_days=retain_days)
        periods = (by,) if by == "all" else (by, "all")
        metrics = MonitorMetrics()
        if not follow:
            summary = read_book(app.kafka, app.contracts, book=book).summary((by,))
            if json_out:
                _json(summary)
            else:
                out.print(summary_table(summary))
            return
        if metrics_port is not None:
            metrics.serve(metrics_port, app.settings.metrics_host)
            console.print(f"[dim]metrics on http://{app.settings.metrics_host}:{metrics_port}/metrics[/dim]")
        live_view = None if json_out else Live(Table(title="reading..."), console=out, auto_refresh=False)
        with live_view or nullcontext():

            def refreshed(current: PerformanceBook) -> None:
                summary = current.summary(periods)
                metrics.observe(summary)
                shown = {**summary, "performance": [r for r in summary["performance"] if r["period"] == by]}
                if live_view is None:
                    _json(shown)
                else:
                    live_view.update(summary_table(shown), refresh=True)

            read_book(app.kafka, app.contracts, book=book, follow=True, refresh_s=refresh, on_refresh=refreshed)


def report(
    out_path: Annotated[Path, typer.Option("--out", help="The HTML file to write (its folder must exist).")] = Path(
        "report.html"
    ),
    retain_days: RetainDays = None,
    prefix: Prefix = None,
) -> None:
    """Write the dashboard as one static HTML page: model versions and roles, realised vs estimated AP per version
    over event time, flip rate per challenger, label coverage, the drift heat map per feature and window, and the
    timeline of drift alarms and loop decisions with their reasons — read from the topics to their current ends
    (`slipstream ui` serves the same page live)."""
    with friendly_errors():
        if retain_days is not None:
            check_number(retain_days, "--retain-days", gt=0)
        if out_path.suffix.lower() not in (".html", ".htm"):
            msg = f"--out: {str(out_path)!r} is not an .html file"
            raise InputError(msg)
        if not out_path.parent.is_dir():
            msg = f"--out: folder {str(out_path.parent)!r} of {str(out_path)!r} does not exist"
            raise InputError(msg)
        from slipstream.monitoring.dashboard_data import DashboardData
        from slipstream.monitoring.dashboard_feed import read_dashboard
        from slipstream.monitoring.performance import PerformanceBook
        from slipstream.monitoring.report import write_report

        app = build(topic_prefix=prefix)
        data = read_dashboard(app.kafka, app.contracts, data=DashboardData(PerformanceBook(retain_days=retain_days)))
        written = write_report(data.book.summary(), out_path, data=data)
        console.print(f"[green]✓[/green] report written to {written} ({written.stat().st_size:,} bytes)")


__all__ = ["monitor", "report", "summary_table"]
