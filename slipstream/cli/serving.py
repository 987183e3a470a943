"""`slipstream serve` (HTTP) and `slipstream score-stream` (Kafka): the two front ends of the scorer."""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Annotated

import typer
from rich.live import Live
from rich.table import Table

from slipstream.cli.common import build, console, friendly_errors

Port = Annotated[int | None, typer.Option(help="Port (default: SLIPSTREAM_SERVE_PORT, 8000).")]


def _logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default: SLIPSTREAM_SERVE_HOST).")] = None,
    port: Port = None,
    log_level: Annotated[str, typer.Option(help="Log level of the scorer and uvicorn.")] = "info",
) -> None:
    """Serve fraud scores and recommendations over HTTP (FastAPI on uvicorn, one worker).

    POST /v1/fraud/score, POST /v1/recommendations, GET /healthz, /readyz, /metrics. The champion of each model is
    loaded at start-up and replaced without downtime when `slipstream models promote` (or rollback) announces a
    new one on model-events. Start Kafka and Redis first (`slipstream infra up`), or point at yours with
    KAFKA_BOOTSTRAP_SERVERS and REDIS_URL.
    """
    import uvicorn

    from serving.http import create_app

    with friendly_errors():
        _logging(log_level)
        app = build()
        app.ensure_platform()
        service = app.scoring_service()
        s = app.settings
        console.print(f"[green]serving[/green] on http://{host or s.serve_host}:{port or s.serve_port}")
        uvicorn.run(
            create_app(service),
            host=host or s.serve_host,
            port=port or s.serve_port,
            loop="uvloop",
            http="httptools",
            access_log=False,
            log_level=log_level.lower(),
            timeout_keep_alive=30,
        )


def _stream_table(stats: object, started: float, version: str) -> Table:
    from serving.stream import StreamStats

    assert isinstance(stats, StreamStats)  # noqa: S101 - the only caller passes one
    elapsed = max(time.monotonic() - started, 1e-9)
    table = Table(title="score-stream: transactions -> predictions")
    for column in ("consumed", "scored/s", "scored", "flagged", "dead letters", "retries", "model"):
        table.add_column(column, justify="right")
    table.add_row(
        f"{stats.consumed:,}",
        f"{stats.scored / elapsed:,.0f}",
        f"{stats.scored:,}",
        f"{stats.flagged:,}",
        f"{stats.invalid:,}",
        f"{stats.retries:,}",
        version or "-",
    )
    return table


def score_stream(
    metrics_port: Annotated[int, typer.Option(help="Serve Prometheus metrics on this port (0: off).")] = 0,
    until_idle: Annotated[float | None, typer.Option(help="Stop after this many seconds without input.")] = None,
    quiet: Annotated[bool, typer.Option(help="No live table.")] = False,
    from_beginning: Annotated[
        bool,
        typer.Option(
            "--from-beginning/--from-end",
            help="Where a new scorer group starts: the oldest retained transaction, or the next one to arrive. "
            "A group that has committed offsets always resumes where it stopped.",
        ),
    ] = False,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "warning",
    reco: Annotated[
        bool, typer.Option("--reco", help="Rank `recommendation-requests` onto `recommendations` instead.")
    ] = False,
) -> None:
    """Score every transaction as it arrives and publish to `predictions` (Avro, keyed by customer) with the model
    version, the features used, their freshness and timings. At least once; prediction_id = event id @ model
    version. Run more of the same command to share the partitions; stop with Ctrl-C.

    With --reco: rank each recommendation request's candidates with the reco champion and publish the ranked
    items, their features and the model version to `recommendations` (at least once, by request_id)."""
    from prometheus_client import start_http_server

    from serving.stream import ScoreStream

    if reco:
        _reco_stream(metrics_port, until_idle, quiet, from_beginning, log_level)
        return
    with friendly_errors():
        _logging(log_level)
        app = build()
        app.ensure_platform()
        service = app.scoring_service(remember_recent=True, reco=False)
        if metrics_port:
            start_http_server(metrics_port, registry=service.metrics.registry)
        producer = app.producer(linger_ms=0.5, client_id="slipstream-score-stream")
        consumer = app.consumer(
            ["transactions"],
            group_id=f"{app.settings.topic_prefix}slipstream-scorer-fraud",
            from_beginning=from_beginning,
            dead_letters=producer,
            processor="score-stream",
        )
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        service.start()
        started = time.monotonic()
        try:
            with Live(console=console, refresh_per_second=2, transient=quiet) as live:

                def on_batch(stats: object) -> None:
                    if not quiet:
                        slot = service.fraud_slot
                        live.update(_stream_table(stats, started, slot.current.version if slot.loaded else ""))

                stream = ScoreStream(service, consumer, producer, on_batch=on_batch)
                try:
                    stats = stream.run(stop, until_idle_s=until_idle)
                except KeyboardInterrupt:
                    stop.set()
                    stats = stream.stats
        finally:
            service.stop()
            consumer.close()
            producer.flush()
        console.print(_stream_table(stats, started, stats.last_model_version))


def _reco_stream(metrics_port: int, until_idle: float | None, quiet: bool, from_beginning: bool, level: str) -> None:
    from prometheus_client import start_http_server

    from serving.reco_stream import REQUESTS, RecoStream, RecoStreamStats

    def table(stats: RecoStreamStats) -> Table:
        elapsed = max(time.monotonic() - stats.started, 1e-9)
        out = Table(title="score-stream --reco: recommendation-requests -> recommendations")
        for column in ("consumed", "ranked/s", "ranked", "items", "dead letters", "retries", "model"):
            out.add_column(column, justify="right")
        out.add_row(
            *(f"{n:,}" for n in (stats.consumed, round(stats.ranked / elapsed), stats.ranked, stats.items)),
            *(f"{n:,}" for n in (stats.invalid, stats.retries)),
            stats.last_model_version or "-",
        )
        return out

    with friendly_errors():
        _logging(level)
        app = build()
        app.ensure_platform()
        service = app.scoring_service(reco=True)
        if metrics_port:
            start_http_server(metrics_port, registry=service.metrics.registry)
        producer = app.producer(linger_ms=0.5)
        consumer = app.consumer(
            [REQUESTS],
            group_id=f"{app.settings.topic_prefix}slipstream-scorer-reco",
            from_beginning=from_beginning,
            dead_letters=producer,
            processor="score-stream-reco",
        )
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        service.start()
        try:
            with Live(console=console, refresh_per_second=2, transient=quiet) as live:
                show = None if quiet else lambda stats: live.update(table(stats))
                stream = RecoStream(service, consumer, producer, on_batch=show)
                try:
                    stats = stream.run(stop, until_idle_s=until_idle)
                except KeyboardInterrupt:
                    stop.set()
                    stats = stream.stats
        finally:
            service.stop()
            consumer.close()
            producer.flush()
        console.print(table(stats))
