"""`slipstream loop`: the closed loop — drift and realised performance trigger retraining; challengers are shadowed,
promoted through gates and rolled back when worse, by policy, with every decision and its evidence recorded."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from slipstream.cli.common import build, console, friendly_errors, out, setup_logging
from slipstream.cli.metrics import MetricsPortOpt, check_metrics_port, serve_metrics
from slipstream.exceptions import InputError
from slipstream.signals import stop_on

loop_app = typer.Typer(
    help=(
        "The closed loop: drift alarms, realised performance or a schedule trigger a retrain; the retrained model is "
        "shadowed and promoted through the policy's gates; a promotion that does worse than its predecessor is "
        "rolled back. Run without a subcommand to start it."
    ),
    invoke_without_command=True,
    no_args_is_help=False,
)


@loop_app.callback()
def loop(
    ctx: typer.Context,
    policy: Annotated[
        Path | None,
        typer.Option(help="Policy file (TOML, see docs/policy.md); default: the policy shipped with Slipstream."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Decide and print, change nothing (no alias, no retrain, no record).")
    ] = False,
    log_level: Annotated[str, typer.Option(help="Python log level.")] = "info",
    group: Annotated[
        str,
        typer.Option(
            help=(
                "Consumer group (under the topic prefix) the loop commits how far it has read and decided to, so "
                "its lag shows in `kafka-consumer-groups`; the loop always reads its topics from the start."
            )
        ),
    ] = "slipstream-loop",
    metrics_port: MetricsPortOpt = None,
) -> None:
    """Run the loop for the policy's model until stopped (Ctrl-C / SIGTERM).

    On start it reads `model-events` (its own past decisions), `drift`, `outcomes` and `shadow-comparisons`, and
    decides nothing before it has caught up: a restart never retrains or promotes twice. Retraining runs in a child
    process (`slipstream loop retrain`) on the champion's logged inputs joined to the labels known by then; scoring
    never waits for it. Every decision is a `model-events` record (reason, evidence, stream time), and its evidence
    is filed on the model version in MLflow.
    """
    if ctx.invoked_subcommand is not None:
        return
    import logging

    from slipstream.monitoring.loop.controller import TOPICS, LoopController, retrain_command
    from slipstream.monitoring.loop.policy import load_policy

    with friendly_errors():
        if policy is not None and not policy.is_file():
            msg = f"--policy: {policy} does not exist"
            raise InputError(msg)
        check_metrics_port(metrics_port)
        chosen = load_policy(policy)
        setup_logging(log_level, "%(asctime)s %(name)s %(levelname)s %(message)s")
        for noisy in ("mlflow", "alembic", "urllib3"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        app = build()
        app.ensure_platform()
        producer = app.producer(log_level=3)
        work = app.settings.state_dir / "loop" / (app.settings.topic_prefix.rstrip(".") or "default")

        def start(plan: Any, out_path: Path) -> subprocess.Popen[bytes]:
            log_file = (out_path.with_suffix(".log")).open("wb")
            return subprocess.Popen(  # noqa: S603 - our own interpreter and module
                list(retrain_command(plan, out_path)), stdout=log_file, stderr=subprocess.STDOUT
            )

        controller = LoopController(
            app.kafka,
            app.contracts,
            app.model_registry,
            producer,
            chosen,
            start,
            work,
            dry_run=dry_run,
            say=lambda text: console.print(f"[cyan]loop[/cyan] {text}"),
            progress_group=app.contracts.catalog.prefix + group,
        )
        stop = threading.Event()
        stop_on(stop)
        console.print(f"[green]closed loop for {chosen.model.name!r}[/green]{' (dry run)' if dry_run else ''}")
        metrics = serve_metrics(app, "loop", metrics_port)
        if metrics is not None:
            metrics.loop(controller.stats)
            metrics.watch_lag(app.kafka, controller.progress_group or "", [app.contracts.topic(t) for t in TOPICS])
        try:
            stats = controller.run(stop)
        finally:
            if metrics is not None:
                metrics.close()
        producer.flush(10)
        out.print(f"loop: {stats.records:,} records read; decisions {stats.decisions or 'none'}")


@loop_app.command("retrain")
def retrain(
    plan: Annotated[str, typer.Option(help="The retrain's plan (JSON, as the loop writes it).")],
    out_file: Annotated[Path, typer.Option("--out", help="Where the result (JSON) goes.")],
) -> None:
    """One retrain of the loop (it starts this as a child): read the champion's logged inputs and the labels known by
    then, fit, gate offline, register behind the parity gate. Writes its result as JSON to --out."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from slipstream.monitoring.loop.retrain import RetrainPlan, run_retrain

    with friendly_errors():
        try:
            raw = json.loads(plan)
            offline = raw.get("offline", {})
            job = RetrainPlan(
                model_name=str(raw["model_name"]),
                retrain_id=str(raw["retrain_id"]),
                champion_version=str(raw["champion_version"]),
                known_by_us=int(raw["known_by_us"]),
                train_from_us=int(raw["train_from_us"]),
                valid_from_us=int(raw["valid_from_us"]),
                valid_to_us=int(raw["valid_to_us"]),
                metric=str(offline.get("metric", "average_precision")),
                margin=float(offline.get("margin", 0.0)),
                refit=bool(raw.get("refit", False)),
            )
        except (ValueError, KeyError, TypeError) as exc:
            msg = f"--plan: not a retrain plan ({exc})"
            raise InputError(msg) from exc
        app = build()
        params = dict(raw.get("params") or {})
        if raw.get("rounds"):
            params["n_estimators"] = int(raw["rounds"])
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=False
        ) as bar:
            task = bar.add_task(f"retrain {job.retrain_id}", total=None)

            def say(text: str) -> None:
                bar.update(task, description=f"retrain {job.retrain_id}: {text}")
                console.print(f"[dim]{text}[/dim]")

            producer = app.producer(log_level=3)
            app.model_registry.actor = "slipstream loop"
            result = run_retrain(
                app.kafka, app.contracts, app.model_registry, job, producer=producer, params=params, say=say
            )
            producer.flush(10)
        out_file.write_text(json.dumps(result, default=str))
        out.print(json.dumps({k: v for k, v in result.items() if k != "plan"}, default=str))
        sys.exit(0)
