"""`slipstream drift`: the drift monitor — features and score against the champion's reference, change detectors on
the realised error and the shadow flip rate — as a Kafka processor beside the shadow consumer."""

from __future__ import annotations

import threading
import time
from typing import Annotated, Any

import typer

from slipstream.cli.common import build, console, friendly_errors, out, setup_logging
from slipstream.cli.metrics import MetricsPortOpt, check_metrics_port, serve_metrics
from slipstream.cli.options import check_number
from slipstream.cli.runtimes import ProcessorRuntimeOpt, check_runtime
from slipstream.exceptions import InputError
from slipstream.signals import stop_on


def drift(
    window_s: Annotated[
        float,
        typer.Option(
            help="Event-time window of the distribution tests, seconds: a multiple of the reference's granularity "
            "(one day), since the thresholds are calibrated on training windows of the same length."
        ),
    ] = 86_400.0,
    fdr: Annotated[
        float | None,
        typer.Option(
            help="False-discovery level of the Benjamini-Hochberg correction across the features and the score: the "
            "nominal false-alarm rate per window (default: the monitor's, see docs/drift.md)."
        ),
    ] = None,
    until_idle: Annotated[
        float | None,
        typer.Option(help="Stop once nothing arrived for this many seconds (backfills, tests); default: run on."),
    ] = None,
    worker_id: Annotated[
        str | None,
        typer.Option(
            help="Part of the transactional id. One drift monitor runs per deployment (a window needs every "
            "partition): a second one under the same id fences the first (default: SLIPSTREAM_WORKER_ID, else 0)."
        ),
    ] = None,
    group: Annotated[str, typer.Option(help="Consumer group (under the topic prefix).")] = "slipstream-drift",
    log_level: Annotated[str, typer.Option(help="Python log level.")] = "warning",
    runtime: ProcessorRuntimeOpt = None,
    metrics_port: MetricsPortOpt = None,
) -> None:
    """Watch the champion's inputs and outputs for drift; write every window to `drift-windows`, alarms to `drift`.

    Reads `predictions` (each champion prediction carries its features and score), `outcomes` (realised error once
    labels arrive) and `shadow-comparisons` (flip rate per challenger). Per tumbling event-time window it tests each
    feature and the score against the reference distributions stored in the champion's model card at registration
    (PSI / Kolmogorov-Smirnov / Wasserstein for numbers, chi-squared / Jensen-Shannon for binary features), with
    thresholds calibrated on the training period's own windows and the Benjamini-Hochberg correction across them;
    change detectors (ADWIN, Page-Hinkley) watch the realised error and the flip rate. Outputs, state (a compacted
    changelog) and input offsets commit together in Kafka transactions.
    """
    from slipstream.models.cards import read_card
    from slipstream.models.exceptions import RegistryError
    from slipstream.monitoring.drift.monitor import DriftSettings
    from slipstream.monitoring.drift.processor import DriftRunSettings, run_drift
    from slipstream.process_metrics import observed
    from slipstream.processor_hosts import hosting

    with friendly_errors():
        check_number(window_s, "--window-s", gt=0)
        if fdr is not None:
            check_number(fdr, "--fdr", gt=0)
            if fdr >= 1:
                msg = f"--fdr: must be < 1, got {fdr!r}"
                raise InputError(msg)
        if until_idle is not None:
            check_number(until_idle, "--until-idle", gt=0)
        check_metrics_port(metrics_port)
        setup_logging(log_level, "%(asctime)s %(name)s %(levelname)s %(message)s")
        app = build(engine_runtime=check_runtime(runtime))
        seconds = round(window_s)
        monitor = DriftSettings(window_s=seconds) if fdr is None else DriftSettings(window_s=seconds, fdr_q=fdr)
        settings = DriftRunSettings(monitor=monitor, group_id=group, worker=worker_id or app.settings.worker_id or "0")
        app.ensure_platform()
        registry = app.model_registry
        cache: dict[tuple[str, str], Any] = {}

        def cards(name: str, version: str) -> Any:
            key = (name, version)
            if key not in cache:
                try:
                    cache[key] = read_card(registry, name, version)
                except RegistryError as exc:
                    console.print(f"[yellow]{exc}[/yellow]")
                    cache[key] = None
            return cache[key]

        stop = threading.Event()

        stop_on(stop)
        runtime = app.settings.engine_runtime
        console.print(f"[green]watching for drift[/green] (windows of {window_s:g} s of event time, {runtime} runtime)")
        started = time.monotonic()
        host = hosting(runtime)
        metrics = serve_metrics(app, "drift", metrics_port)
        if metrics is not None:
            host = observed(host, metrics, settings.worker)
        try:
            stats, counts = run_drift(
                app.kafka, app.contracts, settings, cards, stop, until_idle_s=until_idle, host=host
            )
        finally:
            if metrics is not None:
                metrics.close()
        out.print(
            f"drift: {counts.windows} windows closed, {counts.alarms} alarms, from {counts.predictions} predictions, "
            f"{counts.outcomes} outcomes and {counts.comparisons} comparisons ({counts.unmonitored} of versions "
            f"without a reference) in {time.monotonic() - started:.1f} s; {stats.transactions} transactions"
        )
