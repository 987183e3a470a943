"""`slipstream serve` (HTTP) and `slipstream score-stream` (Kafka): the two front ends of the scorer."""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
import threading
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from slipstream.cli.common import build, console, friendly_errors, setup_logging
from slipstream.exceptions import InputError
from slipstream.signals import stop_on

if TYPE_CHECKING:  # the serving stack (numpy, onnxruntime) loads only for the commands that need it
    from slipstream.serving.kafka_front import FrontStats, KafkaFrontEnd

Port = Annotated[int | None, typer.Option(help="Port (default: SLIPSTREAM_SERVE_PORT, 8000).")]


def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default: SLIPSTREAM_SERVE_HOST).")] = None,
    port: Port = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Worker processes sharing the port. One scores ~2k req/s per core; /metrics reports all of them "
            "summed, whichever answers.",
        ),
    ] = 1,
    log_level: Annotated[str, typer.Option(help="Log level of the scorer and uvicorn.")] = "info",
) -> None:
    """Serve fraud scores and recommendations over HTTP (FastAPI on uvicorn).

    POST /v1/fraud/score, POST /v1/recommendations, GET /healthz, /readyz, /metrics. The champion of each model is
    loaded at start-up and replaced without downtime when `slipstream models promote` (or rollback) announces a
    new one on model-events. Start Kafka and Redis first (`slipstream infra up`), or point at yours with
    KAFKA_BOOTSTRAP_SERVERS and REDIS_URL.

    Authentication: with SLIPSTREAM_SCORER_TOKENS (comma-separated, several at once for rotation) or
    SLIPSTREAM_SCORER_TOKENS_FILE (one token a line), /v1/* needs `Authorization: Bearer <token>` and answers 401
    otherwise; /healthz, /readyz and /metrics stay open. With neither, the scorer is open, and says so at start-up.
    Serve TLS from a proxy in front: a bearer token must not cross a network in clear. See docs/security.md.
    """
    import uvicorn

    from slipstream.serving.metrics import MULTIPROC_ENV

    with friendly_errors():
        setup_logging(log_level)
        app = build()
        app.ensure_platform()
        s = app.settings
        tokens = len(s.accepted_scorer_tokens)
        access = (
            f"bearer token required on /v1/* ({tokens} accepted)"
            if tokens
            else "[yellow]unauthenticated[/yellow]: set SLIPSTREAM_SCORER_TOKENS to require a bearer token"
        )
        console.print(f"[green]serving[/green] on http://{host or s.serve_host}:{port or s.serve_port}; {access}")
        target: Any = "slipstream.asgi:create"
        shared: str | None = None
        if workers == 1:
            target = app.http_app()
        else:  # the workers keep their metrics in one directory; each answers /metrics with all of them summed
            shared = tempfile.mkdtemp(prefix="slipstream-serve-metrics-")
            os.environ[MULTIPROC_ENV] = shared
        try:
            uvicorn.run(
                target,
                factory=workers > 1,
                workers=workers,
                host=host or s.serve_host,
                port=port or s.serve_port,
                loop="uvloop",
                http="httptools",
                access_log=False,
                log_level=log_level.lower(),
                timeout_keep_alive=30,
            )
        finally:
            if shared is not None:
                shutil.rmtree(shared, ignore_errors=True)


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
    worker_id: Annotated[
        str | None,
        typer.Option(
            help="Static group member id (group.instance.id) of this worker: restarted under the same id it takes "
            "its partitions back without a rebalance (if it does not come back, they wait for the session timeout, "
            "45 s). Every worker of the group needs its own. Default: a dynamic member."
        ),
    ] = None,
) -> None:
    """Score every transaction as it arrives and publish to `predictions` (Avro, keyed by customer) with the model
    version, the features used, their freshness and timings. At least once; prediction_id = event id @ model
    version. Run more of the same command to share the partitions (up to their count; each with its own --worker-id
    if given); stop with Ctrl-C.

    With --reco: rank each recommendation request's candidates with the reco champion and publish the ranked
    items, their features and the model version to `recommendations` (at least once, by request_id)."""
    with friendly_errors():
        if worker_id is not None and not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", worker_id):
            msg = f"--worker-id: 1-64 letters, digits, '.', '_' or '-', got {worker_id!r}"
            raise InputError(msg)
        setup_logging(log_level)
        _run_front(
            reco=reco,
            metrics_port=metrics_port,
            until_idle=until_idle,
            quiet=quiet,
            from_beginning=from_beginning,
            worker_id=worker_id,
        )


def _table(stats: FrontStats, reco: bool) -> Table:
    from slipstream.serving.reco_stream import RecoStreamStats
    from slipstream.serving.stream import StreamStats

    elapsed = max(time.monotonic() - stats.started, 1e-9)
    if isinstance(stats, RecoStreamStats):
        title, done, extra = "recommendation-requests -> recommendations", stats.ranked, ("items", stats.items)
    else:
        assert isinstance(stats, StreamStats)  # noqa: S101 - the only other kind
        title, done, extra = "transactions -> predictions", stats.scored, ("flagged", stats.flagged)
    out = Table(title=f"score-stream: {title}")
    columns = (
        "consumed",
        "scored/s",
        "scored",
        extra[0],
        "dead letters",
        "retries",
        "model",
        "time: poll/score/commit",
    )
    for column in columns:
        out.add_column(column, justify="right")
    numbers = (stats.consumed, round(done / elapsed), done, extra[1], stats.invalid, stats.retries)
    split = f"{stats.poll_s:.1f}/{stats.handle_s:.1f}/{stats.commit_s:.1f} s"
    out.add_row(*(f"{n:,}" for n in numbers), stats.last_model_version or "-", split)
    return out


def _run_front(
    *, reco: bool, metrics_port: int, until_idle: float | None, quiet: bool, from_beginning: bool, worker_id: str | None
) -> None:
    from prometheus_client import start_http_server

    from slipstream.serving.reco_stream import REQUESTS, RecoStream
    from slipstream.serving.stream import ScoreStream

    app = build()
    app.ensure_platform()
    service = app.scoring_service(remember_recent=not reco, reco=reco)
    if metrics_port:
        start_http_server(metrics_port, addr=app.settings.metrics_host, registry=service.metrics.registry)
    kind = "reco" if reco else "fraud"
    producer = app.producer(linger_ms=0.5, client_id=f"slipstream-score-stream-{kind}")
    group = f"{app.settings.topic_prefix}slipstream-scorer-{kind}"
    consumer = app.consumer(
        [REQUESTS if reco else "transactions"],
        group_id=group,
        from_beginning=from_beginning,
        dead_letters=producer,
        processor="score-stream-reco" if reco else "score-stream",
        config={"group.instance.id": f"{group}-worker-{worker_id}"} if worker_id is not None else None,
    )
    stop = threading.Event()
    stop_on(stop, signal.SIGTERM)
    service.start()
    stream: KafkaFrontEnd[Any]
    try:
        with Live(console=console, refresh_per_second=2, transient=quiet) as live:

            def show(stats: FrontStats) -> None:
                if not quiet:
                    live.update(_table(stats, reco))

            if reco:
                stream = RecoStream(service, consumer, producer, on_batch=show)
            else:
                stream = ScoreStream(service, consumer, producer, on_batch=show)
            try:
                stats = stream.run(stop, until_idle_s=until_idle)
            except KeyboardInterrupt:
                stop.set()
                stats = stream.stats
    finally:
        service.stop()
        consumer.close()
        producer.flush()
    console.print(_table(stats, reco))
