"""``--metrics-port`` of the long-running commands: checked before any work, then /metrics served while they run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from slipstream.cli.common import console
from slipstream.exceptions import InputError

if TYPE_CHECKING:
    from slipstream.app import Slipstream
    from slipstream.process_metrics import ProcessMetrics

MetricsPortOpt = Annotated[
    int | None,
    typer.Option(
        help="Serve Prometheus /metrics on SLIPSTREAM_METRICS_HOST (127.0.0.1):PORT while running: the process's "
        "counters and its consumer groups' lag (docs/alerts.md)."
    ),
]


def check_metrics_port(port: int | None) -> int | None:
    """``--metrics-port``: a TCP port or None, refused before anything starts."""
    if port is not None and not 0 < port < 65536:
        msg = f"--metrics-port: {port!r} is not a TCP port (1..65535)"
        raise InputError(msg)
    return port


def serve_metrics(app: Slipstream, process: str, port: int | None) -> ProcessMetrics | None:
    """The process's metrics, served on ``port`` (None: not served, nothing collected)."""
    if port is None:
        return None
    from slipstream.process_metrics import ProcessMetrics

    metrics = ProcessMetrics(process, lag_interval_s=app.settings.metrics_lag_interval_s)
    try:
        metrics.serve(port, app.settings.metrics_host)
    except OSError as exc:
        msg = f"--metrics-port {port}: cannot listen on {app.settings.metrics_host}:{port}: {exc.strerror or exc}"
        raise InputError(msg) from exc
    console.print(f"[dim]metrics on http://{app.settings.metrics_host}:{port}/metrics[/dim]")
    return metrics
