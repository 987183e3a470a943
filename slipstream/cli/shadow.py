"""`slipstream shadow`: every challenger scores the champion's exact inputs, live, exactly once."""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import queue as queue_module
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any

import typer

from slipstream.app import Slipstream
from slipstream.cli.common import build, console, friendly_errors, out
from slipstream.cli.metrics import MetricsPortOpt, check_metrics_port, serve_metrics
from slipstream.cli.options import check_number
from slipstream.cli.runtimes import ProcessorRuntimeOpt, check_runtime
from slipstream.settings import Settings
from slipstream.signals import stop_on

if TYPE_CHECKING:
    from slipstream.process_metrics import ProcessMetrics

PR_SET_PDEATHSIG = 1


def shadow_inputs(contracts: Any) -> list[str]:
    from slipstream.monitoring.shadow.consumer import INPUTS

    return [contracts.topic(t) for t in INPUTS]


def _settings(app: Slipstream, group: str, worker: str) -> Any:
    from slipstream.monitoring.shadow import ShadowSettings

    s = app.settings
    return ShadowSettings(
        models=(s.fraud_model, s.reco_model),
        alias_prefix=s.challenger_alias_prefix,
        group_id=group,
        worker=worker,
    )


def _run_worker(
    app: Slipstream,
    group: str,
    worker: str,
    stop: threading.Event,
    until_idle: float | None,
    wrap: Callable[[Any], Any] = lambda host: host,
) -> Any:
    """One member of the group in this process; its processor stats and comparison counts. ``wrap`` wraps the host
    factory (metrics read from the host, or progress sent to the parent)."""
    from slipstream.monitoring.shadow import ShadowWorker
    from slipstream.processor_hosts import hosting

    host = wrap(hosting(app.settings.engine_runtime))
    member = ShadowWorker(app.kafka, app.contracts, app.model_registry, _settings(app, group, worker), host=host)
    stats = member.run(stop, until_idle_s=until_idle)
    challengers = ", ".join(f"{c.model_name}:{c.alias}=v{c.version}" for c in member.challengers.snapshot())
    console.print(f"[dim]worker {worker}: challengers at the end: {challengers or 'none'}[/dim]")
    for refusal in member.challengers.refused:
        console.print(
            f"[yellow]refused[/yellow] {refusal.model_name}:{refusal.alias} v{refusal.version}: {refusal.reason}"
        )
    counts = member.handler.counts
    counts.join = member.handler.join_counts()
    return stats, counts


def _die_with_parent(parent: int) -> None:
    """Linux sends SIGTERM when the parent dies: a killed `slipstream shadow` leaves no worker behind."""
    if sys.platform != "linux":
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def _worker_process(
    settings: Settings, group: str, worker: str, until_idle: float | None, results: Any, parent: int, report: bool
) -> None:
    stop = threading.Event()
    stop_on(stop)
    _die_with_parent(parent)
    from slipstream.process_metrics import reporting

    wrap = (lambda host: reporting(host, results.put, worker)) if report else (lambda host: host)
    stats, counts = _run_worker(Slipstream(settings), group, worker, stop, until_idle, wrap)
    results.put(("final", worker, asdict(stats), asdict(counts)))


def _processes(
    app: Slipstream,
    group: str,
    ids: list[str],
    stop: threading.Event,
    until_idle: float | None,
    metrics: ProcessMetrics | None,
) -> None:
    app.model_registry.challengers(app.settings.fraud_model)  # the registry's database made once, not by N at once
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    procs = {
        w: ctx.Process(
            target=_worker_process,
            args=(app.settings, group, w, until_idle, results, os.getpid(), metrics is not None),
            name=f"shadow-{w}",
        )
        for w in ids
    }
    for proc in procs.values():
        proc.start()
    try:
        while any(p.is_alive() for p in procs.values()):
            failed = [w for w, p in procs.items() if p.exitcode not in (None, 0, -signal.SIGTERM)]
            if failed or stop.is_set():
                for proc in procs.values():
                    if proc.is_alive():
                        proc.terminate()
            with contextlib.suppress(queue_module.Empty):
                _received(results.get(timeout=0.2), metrics)
    finally:
        for proc in procs.values():
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    while not results.empty():
        _received(results.get(), metrics)
    codes = {w: p.exitcode for w, p in procs.items() if p.exitcode not in (0, -signal.SIGTERM)}
    if codes:
        from slipstream.monitoring.exceptions import ShadowError

        msg = f"shadow worker(s) exited with an error (exit codes {codes}; see their output above)"
        raise ShadowError(msg)


def _received(message: tuple[Any, ...], metrics: ProcessMetrics | None) -> None:
    """A worker's message: ("progress", worker, processor, stats, counts) every few seconds (with metrics on), or
    ("final", worker, stats, counts) when it ends."""
    if message[0] == "progress":
        if metrics is not None:
            metrics.snapshot(message[2], message[1], message[3], message[4])
        return
    _report(*message[1:])


def _report(worker: str, stats: dict[str, Any], counts: dict[str, Any]) -> None:
    join = counts["join"]
    out.print(
        f"shadow worker {worker}: {counts['compared']} comparisons ({counts['from_feature_log']} on feature-log "
        f"vectors), {counts['ranked']} ranking comparisons from {stats['consumed']} records; "
        f"{counts['dead_lettered']} dead letters ({join['expired']} predictions whose vector never came); "
        f"{join['parked']} waited for their vector; {stats['transactions']} transactions, {stats['aborted']} aborted, "
        f"{stats['restored']} state entries restored"
    )


def shadow(
    workers: Annotated[
        int, typer.Option(help="Worker processes here, sharing the partitions (at most their count).")
    ] = 1,
    until_idle: Annotated[
        float | None,
        typer.Option(help="Stop once nothing arrived for this many seconds (backfills, tests); default: run on."),
    ] = None,
    group: Annotated[str, typer.Option(help="Consumer group (under the topic prefix).")] = "slipstream-shadow",
    worker_id: Annotated[
        str | None,
        typer.Option(
            help="This command's worker id, part of each worker's transactional id (with --workers N: ID.0 .. "
            "ID.N-1): every command of the group needs its own, and a restarted one must keep it "
            "(default: SLIPSTREAM_WORKER_ID, else 0)."
        ),
    ] = None,
    runtime: ProcessorRuntimeOpt = None,
    metrics_port: MetricsPortOpt = None,
) -> None:
    """Score every champion prediction with every challenger, on the champion's exact inputs; write
    `shadow-comparisons` (and, for rankers, `shadow-rankings` with overlap@k, Kendall tau and NDCG@k).

    A challenger is a version with an MLflow alias starting with SLIPSTREAM_CHALLENGER_ALIAS_PREFIX (`slipstream
    models challenger set`); challengers set or removed on model-events are picked up live. A challenger needing a
    feature the prediction does not carry reads the event's vector from `feature-log`. Outputs, join state and
    input offsets commit together in Kafka transactions: a crash, even SIGKILL, compares nothing twice and loses
    nothing. Scale out with --workers or more commands (each with its own --worker-id), up to the partition count.
    """
    with friendly_errors():
        check_number(workers, "--workers", ge=1)
        if until_idle is not None:
            check_number(until_idle, "--until-idle", gt=0)
        check_metrics_port(metrics_port)
        app = build(engine_runtime=check_runtime(runtime))
        base = worker_id or app.settings.worker_id or "0"
        app.ensure_platform()
        stop = threading.Event()

        stop_on(stop)
        started = time.monotonic()
        console.print(
            f"[green]shadowing[/green] {app.settings.fraud_model}, {app.settings.reco_model} ({workers} worker(s), "
            f"{app.settings.engine_runtime} runtime)"
        )
        metrics = serve_metrics(app, "shadow", metrics_port)
        try:
            if workers == 1:
                from slipstream.process_metrics import observed

                def wrap(host: Any) -> Any:
                    return observed(host, metrics, base) if metrics is not None else host

                stats, counts = _run_worker(app, group, base, stop, until_idle, wrap)
                _report(base, asdict(stats), asdict(counts))
            else:
                if metrics is not None:
                    metrics.watch_lag(app.kafka, app.contracts.catalog.prefix + group, shadow_inputs(app.contracts))
                _processes(app, group, [f"{base}.{i}" for i in range(workers)], stop, until_idle, metrics)
        finally:
            if metrics is not None:
                metrics.close()
        console.print(f"[dim]ran {time.monotonic() - started:.1f} s[/dim]")
