"""`slipstream demo`: the main job, end to end, with a live summary (see :mod:`slipstream.demo`) on standard output:
Rich's spinner, progress bar and live table on a terminal; plain lines, a status line every few seconds, when the
output is a file or a pipe (`make demo | tee demo.log`), where Rich draws none of them."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.status import Status

from slipstream.cli.common import build, friendly_errors, out
from slipstream.cli.demo_view import live_view, status_line
from slipstream.cli.simulate import fraud_data
from slipstream.demo import DemoOptions, DemoReport, DemoRun, LiveStats
from slipstream.demo.closedloop import DRIFT_SCENARIOS, DRIFT_START, POLICY, drift_data, live_seconds_needed
from slipstream.demo.timeline import DAY_US, REACH_US, labels_path
from slipstream.exceptions import InputError


class ConsoleUI:
    """On a terminal: start-up steps with a spinner and their times, the warm-up as a progress bar, then the live
    view."""

    def __init__(self, console: Console, stop: threading.Event, rate: float) -> None:
        self.console = console
        self.stop = stop
        self.rate = rate
        self._status: Status | None = None
        self._progress: Progress | None = None
        self._task: Any = None
        self._live: Live | None = None
        self._since = time.perf_counter()

    def _clear(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def step(self, text: str) -> None:
        self._clear()
        self._since = time.perf_counter()
        self._status = self.console.status(f"{text} …")
        self._status.start()

    def done(self, text: str) -> None:
        self._clear()
        self.console.print(f"[green]✓[/green] {text} [dim]({time.perf_counter() - self._since:.1f} s)[/dim]")
        self._since = time.perf_counter()

    def warm(self, applied: int, total: int) -> None:
        if self._progress is None:
            self._clear()
            columns = (TextColumn("[bold]warm-up"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            self._progress = Progress(*columns, console=self.console, transient=True)
            self._progress.start()
            self._task = self._progress.add_task("warm-up", total=total)
        self._progress.update(self._task, completed=applied)

    def live(self, stats: LiveStats) -> None:
        view = live_view(stats, rate=self.rate, stopping=self.stop.is_set())
        if self._live is None:
            self._clear()
            self._live = Live(view, console=self.console, refresh_per_second=2, transient=True)
            self._live.start()
        else:
            self._live.update(view)

    def close(self, report: DemoReport) -> None:
        self._clear()
        if self._live is not None:
            self._live.stop()
            self._live = None
        if report.live:
            self.console.print(live_view(report.stats, rate=self.rate, final=True))


class PlainUI:
    """For a file or a pipe: a line per step, the warm-up's progress and :func:`status_line` every ``every_s``
    seconds, the final table at the end. Rich draws its spinner, bar and live table only on a terminal."""

    def __init__(
        self,
        console: Console,
        stop: threading.Event,
        rate: float,
        *,
        every_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console
        console.width = max(console.width, 120)  # a file has no width: the final table and the farewell unwrapped
        self.stop = stop
        self.rate = rate
        self.every_s = every_s
        self._clock = clock
        self._since = clock()
        self._last: float | None = None  # the last warm-up or status line
        self._warm_shown = -1
        self._live = False

    def _line(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def _due(self) -> bool:
        now = self._clock()
        if self._last is not None and now - self._last < self.every_s:
            return False
        self._last = now
        return True

    def step(self, text: str) -> None:
        self._since = self._last = self._clock()
        self._line(f"{text} …")

    def done(self, text: str) -> None:
        self._line(f"✓ {text} ({self._clock() - self._since:.1f} s)")
        self._since = self._clock()

    def warm(self, applied: int, total: int) -> None:
        if applied < total and applied != self._warm_shown and self._due():
            self._warm_shown = applied
            self._line(f"  warm-up: {applied:,} of {total:,} events applied ({applied / max(total, 1):.0%})")

    def live(self, stats: LiveStats) -> None:
        if not self._live:
            self._live = True
            self._last = self._clock()
            stats.rates()  # the first mark: rates are measured from here
            self._line(f"live: a status line every {self.every_s:g} s (Ctrl-C stops)")
        elif self._due():
            self._line(status_line(stats, stopping=self.stop.is_set()))

    def close(self, report: DemoReport) -> None:
        if report.live:
            self._line(status_line(report.stats))
            self.console.print(live_view(report.stats, rate=self.rate, final=True))


def console_ui(console: Console, stop: threading.Event, rate: float) -> ConsoleUI | PlainUI:
    """Rich's live views where they can draw (a terminal), plain lines everywhere else."""
    if console.is_terminal and not console.is_dumb_terminal:
        return ConsoleUI(console, stop, rate)
    return PlainUI(console, stop, rate)


def _signals(stop: threading.Event) -> dict[int, Any]:
    """First Ctrl-C (or SIGTERM): stop cleanly; a second one: stop now."""

    def handler(_signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}


def _ensure_data(console: Console, data: Path, drift: str = "none") -> None:
    from slipstream.cli.simulate import simulate_fraud_file

    if data.exists() and labels_path(data).exists():
        console.print(f"[green]✓[/green] simulated data cached in {data}")
        return
    scenario = None
    if drift != "none":
        from slipstream.streams.simulate.scenarios import DriftScenario

        scenario = DriftScenario(drift, start_day=DRIFT_START)
    what = "" if scenario is None else f" with a new fraud pattern from {DRIFT_START} on"
    console.print(f"simulating the Fraud Detection Handbook data set{what} once (cached in {data}) …")
    started = time.perf_counter()
    n, frauds = simulate_fraud_file(data, scenario=scenario)
    console.print(
        f"[green]✓[/green] {n:,} transactions, {frauds:,} frauds [dim]({time.perf_counter() - started:.1f} s)[/dim]"
    )


def _exit(code: int) -> str:
    if code < 0:  # uvicorn re-raises the signal it shut down on, after shutting down cleanly
        with contextlib.suppress(ValueError):
            return f"ended on {signal.Signals(-code).name}"
    return f"exit {code}"


def _farewell(console: Console, report: DemoReport, *, external: bool, keep: bool) -> bool:
    """Say how it ended; True when it ended well."""
    t = report.timings
    if "startup" in t:
        parts = ", ".join(
            f"{k} {t[k]:.0f}" for k in ("platform", "data", "train", "reco", "warmup", "scorers") if k in t
        )
        console.print(f"start-up to live traffic: {t['startup']:.0f} s ({parts} s)")
    live_cpu, live_s = report.cpu_s.get("live"), report.stats.elapsed
    if live_cpu and live_s > 0:
        shares = ", ".join(f"{name} {used / live_s:.0%}" for name, used in live_cpu.items())
        console.print(f"CPU while live ({live_s:.0f} s; share of one core): {shares}")
    stopped = ", ".join(f"{name} ({_exit(code)})" for name, code in report.exit_codes.items())
    if report.left_running:
        console.print(f"[red]✗[/red] still running after the stop: pids {report.left_running}")
    elif stopped:
        console.print(f"[green]✓[/green] stopped {stopped}: no child process left running")
    prefix = report.namespace.prefix
    if report.cleaned:
        console.print(f"[green]✓[/green] deleted this run's topics ({prefix}*) and Redis keys")
    elif keep:
        console.print(f"kept this run's topics: `SLIPSTREAM_TOPIC_PREFIX={prefix} slipstream tail predictions`")
    else:
        console.print(f"[yellow]could not delete this run's topics ({prefix}*) yet: the next run does[/yellow]")
    if external:
        console.print("Kafka and Redis were given (KAFKA_BOOTSTRAP_SERVERS, REDIS_URL) and are left as they are.")
    else:
        console.print(
            "Kafka and Redis keep running for the next run: "
            "[bold]slipstream infra down[/bold] (or [bold]make down[/bold]) stops them."
        )
    if report.error:
        console.print(f"[bold red]error:[/bold red] {report.error}", highlight=False)
    scored_nothing = report.live and report.stats.scored == 0
    if scored_nothing:
        console.print("[red]✗[/red] nothing was scored")
    return report.error is None and not report.left_running and not scored_nothing


def _drift(drift: str | None, data: Path | None, duration: float | None, rate: float) -> str:
    """``--drift`` as given (checked), else new-fraud-pattern when the run is long enough for the loop to promote."""
    if drift is not None and drift not in DRIFT_SCENARIOS:
        msg = f"--drift: {drift!r} is not one of {', '.join(DRIFT_SCENARIOS)}"
        raise InputError(msg)
    if data is not None:
        if drift not in (None, "none"):
            msg = f"--drift {drift} picks the demo's own simulation; --data {data} is a file of yours: give one"
            raise InputError(msg)
        return "none"
    if drift is None:
        enough = duration is None or duration >= live_seconds_needed(7.0, rate)
        return "new-fraud-pattern" if enough else "none"
    return drift


def _default_data(state_dir: Path, drift: str) -> Path:
    return state_dir / "data" / "fraud.parquet" if drift == "none" else drift_data(state_dir, drift)


def demo(
    rate: Annotated[float, typer.Option(min=0.1, help="Live transactions per second (open loop).")] = 200.0,
    duration: Annotated[
        float | None, typer.Option(min=1, help="Seconds of live traffic, then stop (default: until Ctrl-C).")
    ] = None,
    warmup_days: Annotated[
        float,
        typer.Option(min=0, help="Simulated days before live run through the engine first (37: every window full)."),
    ] = REACH_US / DAY_US,
    poison_every: Annotated[
        int, typer.Option(min=0, help="A truncated message after every N transactions (0: none).")
    ] = 1000,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Fraud transactions parquet, labels beside it (X.labels.parquet); must exist. Default: the cached"
            " simulation <state dir>/data/fraud.parquet, made once."
        ),
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port of the HTTP scorer (default: a free one).")] = None,
    keep: Annotated[bool, typer.Option(help="Keep this run's topics and Redis keys afterwards.")] = False,
    report_json: Annotated[
        Path | None, typer.Option("--report", help="Also write the final summary as JSON here.")
    ] = None,
    drift: Annotated[
        str | None,
        typer.Option(
            help=f"A new fraud pattern mid-demo: new-fraud-pattern (card testing from simulated {DRIFT_START} on, "
            "0-7 event days into live; its own cached simulation) or none.",
            show_default="new-fraud-pattern, unless --data is given or --duration is too short for the loop",
        ),
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option(help="The closed loop's policy (TOML, docs/policy.md).", show_default="the demo's, beside it"),
    ] = None,
    dashboard: Annotated[
        bool, typer.Option("--ui/--no-ui", help="Serve the dashboard (`slipstream ui`) on a free port.")
    ] = True,
) -> None:
    """Everything, live: start Kafka + Redis, simulate the Fraud Handbook's card traffic, backfill features, train a
    LightGBM model and register it in MLflow behind the ONNX parity gate as champion, then the recommendations
    ranker (LambdaRank on the simulated clickstream, as `slipstream train reco`) likewise, its features at the
    clickstream's cut-off materialized into the online store, and a challenger beside each champion; warm the
    online store through the feature engine, start the engine, score-stream (transactions and recommendation
    requests), the HTTP scorer, the shadow consumer and the label joiner, then stream transactions (and their
    delayed labels) at --rate, with recommendation requests over HTTP and Kafka beside them, and watch throughput,
    latency, frauds caught, the recommendations' NDCG@10, each challenger against its champion (agreement and
    flips; overlap@10, Kendall tau, NDCG@10) and realised performance as labels arrive. The closed loop runs beside
    them (`slipstream drift`, `slipstream loop` under the demo's policy, `slipstream ui`): with --drift a new fraud
    pattern starts mid-demo, and the live table shows the alarm, the retrain, the challenger in shadow, the promotion
    and the recovery. Ctrl-C stops every process the demo started; Kafka and Redis keep running
    (`slipstream infra down`)."""
    with friendly_errors():
        if data is not None:  # given, it must exist: a mistyped path is an error, never a place to simulate into
            fraud_data(data)
        drift = _drift(drift, data, duration, rate)
        if policy is not None:
            from slipstream.monitoring.loop.policy import load_policy

            load_policy(policy)  # a bad key fails here, before any work
        app = build()
        options = DemoOptions(
            rate=rate,
            duration_s=duration,
            warmup_days=warmup_days,
            poison_every=poison_every,
            data=data or _default_data(app.settings.state_dir, drift),
            keep=keep,
            port=port,
            drift=drift,
            policy=policy or POLICY,
            ui=dashboard,
        )
        stop = threading.Event()
        ui = console_ui(out, stop, rate)
        _ensure_data(out, options.data, drift)
        previous = _signals(stop)
        run = DemoRun(app, options, ui, stop)
        try:
            report = run.run()
        finally:
            ui.close(run.report)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if report_json is not None:
            summary = report.summary()
            report_json.write_text(json.dumps(summary, indent=2, default=str))
        if not _farewell(out, report, external=app.external, keep=keep):
            raise typer.Exit(1)
