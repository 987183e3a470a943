"""`slipstream outcomes`: join predictions and challenger scores to the labels that arrive days later."""

from __future__ import annotations

import threading
import time
from typing import Annotated

import typer

from slipstream.cli.common import build, console, friendly_errors, out
from slipstream.cli.metrics import MetricsPortOpt, check_metrics_port, serve_metrics
from slipstream.cli.options import check_number
from slipstream.cli.runtimes import ProcessorRuntimeOpt, check_runtime
from slipstream.signals import stop_on


def outcomes(
    until_idle: Annotated[
        float | None,
        typer.Option(help="Stop once nothing arrived for this many seconds (backfills, tests); default: run on."),
    ] = None,
    horizon_days: Annotated[
        float | None,
        typer.Option(help="Event-time days to wait for a label (default: SLIPSTREAM_LABEL_HORIZON_DAYS, 30)."),
    ] = None,
    grace_days: Annotated[
        float | None, typer.Option(help="Extra days past the horizon (default: SLIPSTREAM_LABEL_GRACE_DAYS, 1).")
    ] = None,
    worker_id: Annotated[
        str | None,
        typer.Option(
            help="This worker's id, part of its transactional id: every worker of the group needs its own, and a "
            "restarted worker must keep it (default: SLIPSTREAM_WORKER_ID, else 0)."
        ),
    ] = None,
    group: Annotated[str, typer.Option(help="Consumer group (under the topic prefix).")] = "slipstream-outcomes",
    runtime: ProcessorRuntimeOpt = None,
    metrics_port: MetricsPortOpt = None,
) -> None:
    """Join labels to predictions and shadow comparisons by event id, whichever arrives first; write `outcomes`.

    Reads `predictions`, `shadow-comparisons` and `labels` (co-partitioned by customer) as one consumer group and
    writes one record per prediction and per challenger score to `outcomes`: LABELLED when its label came,
    UNLABELLED_AT_HORIZON when none came within the horizon of event time, and LABEL_WITHOUT_PREDICTION for a
    label no score claimed. Outputs, the join state (a compacted changelog) and input offsets commit together in
    Kafka transactions: a crash, even SIGKILL, loses nothing and writes nothing twice. Scale out by running more
    workers, each with its own --worker-id, up to the partition count (the workers of a group share one runtime).
    """
    from slipstream.monitoring.outcomes.processor import JoinSettings, run_outcomes
    from slipstream.process_metrics import observed
    from slipstream.processor_hosts import hosting

    with friendly_errors():
        if horizon_days is not None:
            check_number(horizon_days, "--horizon-days", gt=0)
        if grace_days is not None:
            check_number(grace_days, "--grace-days", ge=0)
        if until_idle is not None:
            check_number(until_idle, "--until-idle", gt=0)
        check_metrics_port(metrics_port)
        app = build(engine_runtime=check_runtime(runtime))
        s = app.settings
        settings = JoinSettings(
            horizon_days=s.label_horizon_days if horizon_days is None else horizon_days,
            grace_days=s.label_grace_days if grace_days is None else grace_days,
            group_id=group,
            worker=worker_id or s.worker_id or "0",
        )
        app.ensure_platform()
        stop = threading.Event()

        stop_on(stop)
        console.print(
            f"[green]joining labels[/green] (horizon {settings.horizon_days:g} d + grace {settings.grace_days:g} d, "
            f"worker {settings.worker}, {s.engine_runtime} runtime)"
        )
        started = time.monotonic()
        host = hosting(s.engine_runtime)
        metrics = serve_metrics(app, "outcomes", metrics_port)
        if metrics is not None:
            host = observed(host, metrics, settings.worker)
        try:
            stats, counts = run_outcomes(app.kafka, app.contracts, settings, stop, until_idle_s=until_idle, host=host)
        finally:
            if metrics is not None:
                metrics.close()
        out.print(
            f"outcomes: {stats.produced} written ({counts.labelled} labelled, {counts.unlabelled} unlabelled at the "
            f"horizon, {counts.orphan_labels} labels without prediction) from {stats.consumed} records in "
            f"{time.monotonic() - started:.1f} s; {counts.duplicate_scores} duplicate scores and "
            f"{counts.duplicate_labels} duplicate labels ignored; {stats.dead_letters} dead letters; "
            f"{stats.restored} state entries restored"
        )
