"""`slipstream drill`: run the closed loop on a stream with a known drift, at accelerated event time, and report what
it saw and did."""

from __future__ import annotations

import json
import sys
import threading
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from slipstream.cli.common import build, console, friendly_errors, out
from slipstream.cli.options import check_number
from slipstream.exceptions import InputError
from slipstream.signals import stop_on


class Scenario(StrEnum):
    none = "none"
    new_fraud_pattern = "new-fraud-pattern"
    covariate_shift = "covariate-shift"


class LabelDelay(StrEnum):
    handbook = "handbook"
    realistic = "realistic"


def drill(
    scenario: Annotated[
        Scenario,
        typer.Option(
            help="Simulated drift: none; new-fraud-pattern (card testing the champion never saw: bursts of small "
            "night-time frauds); covariate-shift (amounts and terminal mix move, fraud rules unchanged)."
        ),
    ] = Scenario.none,
    days: Annotated[int, typer.Option(help="Days of live traffic (event time) after the live start.")] = 60,
    drift_day: Annotated[int, typer.Option(help="Live day on which the scenario's drift starts.")] = 14,
    events: Annotated[
        Path | None,
        typer.Option(help="Your transactions (.parquet/.jsonl) instead of a simulation; needs --labels."),
    ] = None,
    labels: Annotated[Path | None, typer.Option(help="Your labels (.parquet/.jsonl), with --events.")] = None,
    drift_start: Annotated[
        str | None, typer.Option(help="With --events: when the drift starts (YYYY-MM-DD[THH:MM]); omit for none.")
    ] = None,
    label_delay: Annotated[
        LabelDelay,
        typer.Option(
            help="Simulated labels: handbook (every label 7 days after), realistic (frauds after ~2 days, lognormal; "
            "genuine confirmed at 30 days)."
        ),
    ] = LabelDelay.handbook,
    train_days: Annotated[int, typer.Option(help="Days the first champion is trained on.")] = 21,
    customers: Annotated[int, typer.Option(help="Simulated customers (terminals: twice as many).")] = 5000,
    bad_promotion: Annotated[
        bool, typer.Option(help="Promote a deliberately worse model mid-run: the loop must roll it back.")
    ] = False,
    bad_promotion_day: Annotated[float, typer.Option(help="Live day of the bad promotion.")] = 7.0,
    policy: Annotated[
        Path | None, typer.Option(help="The loop's policy file (TOML; default: the shipped policy).")
    ] = None,
    max_lag: Annotated[
        int, typer.Option(help="Transactions the scorer may be behind before the stream waits for it.")
    ] = 2000,
    keep: Annotated[bool, typer.Option(help="Keep the drill's topics, Redis keys and MLflow database.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    out_file: Annotated[Path | None, typer.Option("--out", help="Also write the JSON report here.")] = None,
) -> None:
    """Drill the closed loop: drift → alarm → retrain → shadow → gated promotion → rollback, on the whole platform.

    Starts the engine, `score-stream`, `shadow`, `outcomes`, `drift` and `loop` in a throwaway namespace of the local
    platform, trains the first champion on the stream's first weeks, then streams the rest as fast as the scorer keeps
    up (the stream waits while the loop retrains: training takes wall time, not event time). The report: alarms with
    their evidence, false alarms before the drift, detection delay, retrains, promotions and rollbacks in event time,
    and the realised AP and card precision@100 of every version per period (before the drift, after it under the old
    champion, after the promotion), plus `checks`. Exit code 1 when a check fails.
    """
    from slipstream.drill.checks import checks
    from slipstream.drill.data import from_files, simulated
    from slipstream.drill.exceptions import DrillStopped
    from slipstream.drill.run import DrillOptions, DrillRun

    with friendly_errors():
        check_number(days, "--days", ge=1)
        check_number(drift_day, "--drift-day", ge=0)
        check_number(train_days, "--train-days", ge=7)
        check_number(customers, "--customers", ge=100)
        check_number(max_lag, "--max-lag", ge=100)
        check_number(bad_promotion_day, "--bad-promotion-day", ge=0)
        if (events is None) != (labels is None):
            msg = "--events and --labels go together: give both files, or neither (a simulation)"
            raise InputError(msg)
        if events is None and drift_start is not None:
            msg = "--drift-start is for --events; a simulation's drift starts on --drift-day"
            raise InputError(msg)
        if events is None and scenario is not Scenario.none and drift_day >= days:
            msg = f"--drift-day {drift_day} must be before the end of the live traffic (--days {days})"
            raise InputError(msg)
        if policy is not None and not policy.is_file():
            msg = f"--policy: {policy} does not exist"
            raise InputError(msg)
        if policy is not None:
            from slipstream.monitoring.loop.policy import load_policy

            load_policy(policy)  # a bad key fails here, before any work
        app = build()
        console.print("[bold]preparing the drill's events[/bold]")
        if events is not None and labels is not None:
            data = from_files(events, labels, drift_start, train_days)
        else:
            data = simulated(
                scenario.value,
                days=days,
                drift_day=drift_day,
                train_days=train_days,
                customers=customers,
                realistic_labels=label_delay is LabelDelay.realistic,
            )
        console.print(f"[dim]{json.dumps(data.describe())}[/dim]")
        options = DrillOptions(
            policy=policy, max_lag=max_lag, bad_promotion_day=bad_promotion_day if bad_promotion else None, keep=keep
        )
        stop = threading.Event()
        stop_on(stop)
        show = _progress_printer()
        run = DrillRun(app, data, options, stop, on_progress=show)
        try:
            report = run.run()
        except DrillStopped:
            console.print("[yellow]drill stopped; everything it started is stopped and removed[/yellow]")
            raise typer.Exit(130) from None
        report["checks"] = checks(report, scenario=scenario.value if events is None else None, bad=bad_promotion)
        text = json.dumps(report, indent=2, default=str)
        if out_file is not None:
            out_file.write_text(text + "\n")
        if as_json:
            out.print_json(text) if sys.stdout.isatty() else print(text)
        else:
            _summary(report)
        if not all(c["passed"] for c in report["checks"].values()):
            raise typer.Exit(1)


def _progress_printer() -> Any:
    from slipstream.demo.timeline import iso

    last: list[str] = [""]

    def show(p: Any) -> None:
        line = f"{p.phase or 'starting'}: {p.sent:,}/{p.total:,} transactions, event time {iso(p.event_us)[:16]}"
        if p.paused_s:
            line += f", waited {p.paused_s:.0f} s for the pipeline"
        if line[:40] != last[0][:40] or p.sent % 20_000 == 0:
            console.print(f"[dim]{line}[/dim]")
            last[0] = line

    return show


def _summary(report: dict[str, Any]) -> None:
    out.print(f"alarms: {len(report['alarms'])} ({report['false_alarms_before_drift']} before the drift)")
    for d in report["decisions"]:
        out.print(f"  {d['at'] or '-':25} {d['action']:20} v{d['version']} {d['reason'] or ''}")
    for name, check in report["checks"].items():
        mark = "[green]pass[/green]" if check["passed"] else "[red]FAIL[/red]"
        out.print(f"{mark} {name}: {check['detail']}")
