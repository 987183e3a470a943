"""`slipstream ui`: the dashboard served over HTTP (FastAPI on uvicorn), kept fresh from Kafka in the background."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from slipstream.cli.common import build, console, friendly_errors
from slipstream.cli.options import check_number
from slipstream.exceptions import InputError

if TYPE_CHECKING:  # FastAPI and the plotting stack load only when the command runs
    from fastapi import FastAPI

    from slipstream.monitoring.dashboard_feed import LivePage

Prefix = Annotated[
    str | None, typer.Option(help="Namespace prepended to every topic name.", envvar="SLIPSTREAM_TOPIC_PREFIX")
]


def create_app(live: LivePage) -> FastAPI:
    """``/``: the last page rendered (never waits for Kafka); ``/healthz``: the reader's state as JSON."""
    import orjson
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse, Response

    app = FastAPI(title="Slipstream dashboard", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        return HTMLResponse(live.page, headers={"Cache-Control": "no-store"})

    @app.get("/healthz")
    def healthz() -> Response:
        return Response(orjson.dumps(live.health()), media_type="application/json")

    return app


def ui(
    host: Annotated[str, typer.Option(help="Address to listen on (keep it loopback unless behind a proxy).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8050,
    refresh_s: Annotated[
        float,
        typer.Option(
            "--refresh-s",
            help="Redraw the page from the records read at most this often (seconds); the browser reloads it as often.",
        ),
    ] = 10.0,
    retain_days: Annotated[
        float | None,
        typer.Option(
            help="Reduce ISO weeks that ended more than this many event-time days ago to their figures (bounds "
            "memory; keep it above the label horizon). Default: keep every prediction."
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="Log level of uvicorn.")] = "warning",
    prefix: Prefix = None,
) -> None:
    """Serve the dashboard: model versions and roles, realised vs estimated performance per version, the drift heat
    map, the flip rate per challenger, and the timeline of alarms and the closed loop's decisions with their reasons.

    Reads predictions, shadow-comparisons, shadow-rankings, outcomes, drift-windows, drift and model-events from the
    beginning, then follows them. GET / is the page, GET /healthz the reader's state."""
    with friendly_errors():
        check_number(refresh_s, "--refresh-s", gt=0)
        if retain_days is not None:
            check_number(retain_days, "--retain-days", gt=0)
        if not 0 < port < 65536:
            msg = f"--port: {port!r} is not a TCP port (1..65535)"
            raise InputError(msg)
        import uvicorn

        from slipstream.monitoring.dashboard_feed import LivePage

        app = build(topic_prefix=prefix)
        live = LivePage(app.kafka, app.contracts, refresh_s=refresh_s, retain_days=retain_days)
        live.start()
        console.print(f"[green]dashboard[/green] on http://{host}:{port}/ (reading Kafka at {app.bootstrap_servers})")
        try:
            uvicorn.run(create_app(live), host=host, port=port, access_log=False, log_level=log_level.lower())
        finally:
            live.stop()


__all__ = ["create_app", "ui"]
