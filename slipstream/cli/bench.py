"""`slipstream bench ...`: benchmarks that print numbers (never timed assertions in tests)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import fields
from typing import Annotated, Any

import typer
from rich.table import Table

from slipstream.cli.common import build, console, friendly_errors, out
from slipstream.cli.inputs import InputsCommand, reads
from slipstream.cli.options import check_choices, check_number
from slipstream.cli.simulate import FraudDataOpt, fraud_data, fraud_files, labels_path
from slipstream.exceptions import InputError

bench_app = typer.Typer(help="Benchmarks with their baselines measured in the same run.", no_args_is_help=True)


def _default_parts(config: type) -> tuple[str, ...]:
    """The parts a benchmark knows: its config's default (every part)."""
    default = next(f.default for f in fields(config) if f.name == "parts")
    return tuple(str(part) for part in default) if isinstance(default, tuple) else ()


@bench_app.command("features", cls=InputsCommand)
@reads(fraud_files)
def features(
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON only.")] = False,
    days: Annotated[float, typer.Option(help="Days of the simulated stream for the throughput run.")] = 14.0,
    rate: Annotated[float, typer.Option(help="Open-loop rate of the freshness run (events/s).")] = 1000.0,
    seconds: Annotated[float, typer.Option(help="Length of the freshness run.")] = 20.0,
    push_rows: Annotated[int, typer.Option(help="Rows written through Feast push for the baseline.")] = 2000,
    parts: Annotated[str, typer.Option(help="Which parts to run: online,faust,freshness,push,offline.")] = (
        "online,faust,freshness,push,offline"
    ),
    data: FraudDataOpt = None,
    workers: Annotated[
        str,
        typer.Option(
            help="Workers per stage for the online part; several (1,2) run it once each, the first keeping the "
            "historical keys, with ratio_vs_1_worker and cpu_us_per_event per stage."
        ),
    ] = "1",
) -> None:
    """Online engine events/s and freshness p50/p99, Feast's per-event push on the same rows, offline events/s."""
    from slipstream.bench.features_bench import FeatureBenchConfig, run_features_bench

    with friendly_errors():
        chosen = check_choices(parts, _default_parts(FeatureBenchConfig), "--parts")
        check_number(days, "--days", gt=0)
        check_number(rate, "--rate", gt=0)
        check_number(seconds, "--seconds", gt=0)
        check_number(push_rows, "--push-rows", ge=1)
        counts = _counts(workers, "--workers")
        path = fraud_data(data, show_progress=not as_json)
        app = build()
        app.ensure_platform()
        config = FeatureBenchConfig(
            path,
            labels_path(path),
            days=days,
            rate=rate,
            freshness_seconds=seconds,
            push_rows=push_rows,
            parts=chosen,
            workers=counts,
        )
        results = run_features_bench(app, config, (lambda _m: None) if as_json else console.print)
        _print_results("slipstream bench features", results, as_json)


def _counts(text: str, option: str) -> tuple[int, ...]:
    """Comma-separated whole numbers, each >= 1, at least one."""
    try:
        counts = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        msg = f"{option}: expected comma-separated whole numbers, got {text!r}"
        raise InputError(msg) from exc
    if not counts or min(counts) < 1:
        msg = f"{option}: expected numbers >= 1, got {text!r}"
        raise InputError(msg)
    return counts


def _rates(text: str, option: str = "--rates") -> tuple[float, ...]:
    """Comma-separated rates, each > 0, at least one."""
    try:
        rates = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        msg = f"{option}: expected comma-separated numbers, got {text!r}"
        raise InputError(msg) from exc
    if not rates or not all(r > 0 for r in rates):  # NaN is not > 0 either
        msg = f"{option}: expected rates > 0, got {text!r}"
        raise InputError(msg)
    return rates


def _say(as_json: bool) -> Callable[[str], None]:
    """Progress to stderr, in both modes (stdout carries only the results)."""
    return lambda text: console.print(text, style="dim", highlight=False, markup=False)


def _print_results(title: str, results: dict[str, Any], as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(results))
        return
    table = Table("metric", "value", title=title)
    lists: dict[str, list[dict[str, Any]]] = {}
    for key, value in results.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            lists[key] = value
        elif isinstance(value, dict):
            table.add_row(key, ", ".join(f"{k}={v}" for k, v in value.items()))
        else:
            table.add_row(key, f"{value:,}" if isinstance(value, int | float) else str(value))
    out.print(table)
    for key, rows in lists.items():
        sub = Table(*rows[0].keys(), title=f"{title}: {key}")
        for row in rows:
            sub.add_row(*(f"{v:,}" if isinstance(v, int | float) else str(v) for v in row.values()))
        out.print(sub)


@bench_app.command("scorer")
def scorer(
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON only.")] = False,
    rates: Annotated[str, typer.Option(help="HTTP open-loop rates to test (req/s).")] = "500,1000,2000,3000,4000,5000",
    seconds: Annotated[float, typer.Option(help="Seconds at each HTTP rate.")] = 5.0,
    samples: Annotated[int, typer.Option(help="In-process scoring calls measured.")] = 10_000,
    naive_samples: Annotated[int, typer.Option(help="Naive-stack (Feast SDK + sklearn) calls measured.")] = 3_000,
    paced_rate: Annotated[float, typer.Option(help="Open-loop rate of the in-process and naive calls (calls/s).")] = (
        1_000.0
    ),
    connections: Annotated[int, typer.Option(help="Keep-alive connections of the HTTP load generator.")] = 8,
    workers: Annotated[int, typer.Option(min=1, help="`slipstream serve --workers` for the HTTP parts.")] = 1,
    swap_seconds: Annotated[float, typer.Option(help="Length of the hot-swap run (at 500 req/s).")] = 10.0,
    load_days: Annotated[int, typer.Option(help="Simulated days loaded through the engine before scoring.")] = 21,
    parts: Annotated[str, typer.Option(help="Which parts to run: inprocess,http,swap.")] = "inprocess,http,swap",
    keep: Annotated[bool, typer.Option(help="Keep the run's topics, Redis keys, Feast repo and models.")] = False,
) -> None:
    """Fraud scorer latency in-process and over HTTP (open loop, p50/p99/p99.9), the naive stack (Feast SDK read +
    LightGBM sklearn predict_proba) in the same run, and a model hot swap under load. Builds its own world first:
    simulated traffic through the real engine into Redis, two trained and registered models."""
    from slipstream.bench.scorer_bench import ScorerBenchConfig, run_scorer_bench

    with friendly_errors():
        chosen = check_choices(parts, _default_parts(ScorerBenchConfig), "--parts")
        for value, option in ((seconds, "--seconds"), (paced_rate, "--paced-rate"), (swap_seconds, "--swap-seconds")):
            check_number(value, option, gt=0)
        for count, option in (
            (samples, "--samples"),
            (naive_samples, "--naive-samples"),
            (connections, "--connections"),
        ):
            check_number(count, option, ge=1)
        check_number(load_days, "--load-days", ge=1)
        config = ScorerBenchConfig(
            load_days=load_days,
            inprocess_samples=samples,
            naive_samples=naive_samples,
            paced_rate=paced_rate,
            rates=_rates(rates),
            rate_seconds=seconds,
            connections=connections,
            workers=workers,
            swap_seconds=swap_seconds,
            parts=chosen,
            keep=keep,
        )
        results = run_scorer_bench(build(), config, _say(as_json))
        _print_results("slipstream bench scorer", results, as_json)


@bench_app.command("e2e")
def e2e(
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON only.")] = False,
    rates: Annotated[str, typer.Option(help="Open-loop transaction rates to test (events/s).")] = "1000,5000",
    seconds: Annotated[float, typer.Option(help="Measured seconds at each rate.")] = 25.0,
    warmup: Annotated[float, typer.Option(help="Unmeasured seconds at each rate before the measured ones.")] = 5.0,
    drain: Annotated[float, typer.Option(help="Seconds to wait for the last predictions; later ones are lost.")] = 10.0,
    labels: Annotated[bool, typer.Option(help="Also produce the label events in event-time order (unpaced).")] = True,
    load_days: Annotated[int, typer.Option(help="Simulated days loaded through the engine first.")] = 21,
    keep: Annotated[bool, typer.Option(help="Keep the run's topics, Redis keys, Feast repo and models.")] = False,
    scorers: Annotated[
        int, typer.Option(min=1, help="`slipstream score-stream` workers (processes sharing the partitions).")
    ] = 1,
) -> None:
    """Event produced -> prediction on the predictions topic (open loop, p50/p99/p99.9, lost, duplicates), with the
    engine (one process per stage) and `slipstream score-stream` running beside it on this machine."""
    from slipstream.bench.e2e_bench import E2EBenchConfig, run_e2e_bench

    with friendly_errors():
        check_number(seconds, "--seconds", gt=0)
        check_number(warmup, "--warmup", ge=0)
        check_number(drain, "--drain", ge=0)
        check_number(load_days, "--load-days", ge=1)
        config = E2EBenchConfig(
            rates=_rates(rates),
            seconds=seconds,
            warmup_seconds=warmup,
            drain_s=drain,
            labels=labels,
            load_days=load_days,
            keep=keep,
            scorers=scorers,
        )
        results = run_e2e_bench(build(), config, _say(as_json))
        _print_results("slipstream bench e2e", results, as_json)


@bench_app.command("shadow")
def shadow(
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON only.")] = False,
    rate: Annotated[float, typer.Option(help="Champion predictions published per second (open loop).")] = 1000.0,
    seconds: Annotated[float, typer.Option(help="Length of the run.")] = 60.0,
    label_lag: Annotated[float, typer.Option(help="Seconds after its prediction each label is published.")] = 2.0,
    kill: Annotated[bool, typer.Option(help="SIGKILL the shadow consumer halfway and restart it.")] = True,
    trees: Annotated[int, typer.Option(help="Boosting rounds of the champion and each challenger.")] = 200,
) -> None:
    """The shadow consumer (two challengers) and the label joiner as child processes under an open-loop stream of
    predictions and their labels: CPU per prediction (both processes), comparison lag p50/p99 (prediction on its
    topic -> comparison on its topic), lost and duplicate comparisons and outcomes across a SIGKILL and restart of
    the shadow consumer, and the cost of only decoding the predictions, measured in the same run."""
    from slipstream.bench.shadow_bench import ShadowBenchConfig, run_shadow_bench

    with friendly_errors():
        check_number(rate, "--rate", gt=0)
        check_number(seconds, "--seconds", gt=0)
        check_number(label_lag, "--label-lag", ge=0)
        check_number(trees, "--trees", ge=1)
        config = ShadowBenchConfig(rate=rate, seconds=seconds, label_lag_s=label_lag, kill=kill, trees=trees)
        app = build()
        app.ensure_platform()
        results = run_shadow_bench(app, config, _say(as_json))
        _print_results("slipstream bench shadow", results, as_json)


@bench_app.command("drift")
def drift(
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON only.")] = False,
    rate: Annotated[float, typer.Option(help="Champion predictions published per second (open loop).")] = 1000.0,
    seconds: Annotated[float, typer.Option(help="Length of the run.")] = 30.0,
    window_every: Annotated[
        float, typer.Option(help="Wall seconds per one-day event-time window (event time runs faster).")
    ] = 5.0,
) -> None:
    """`slipstream drift` as a child process under an open-loop stream of champion predictions (15 features +
    score): its CPU per event, the cost of only decoding the same predictions measured in the same run and the
    ratio, predictions consumed, windows closed (and predictions counted in them), and how long after event time
    passes a window its record is on `drift-windows` (p50/p99)."""
    from slipstream.bench.drift_bench import DriftBenchConfig, run_drift_bench

    with friendly_errors():
        check_number(rate, "--rate", gt=0)
        check_number(seconds, "--seconds", gt=0)
        check_number(window_every, "--window-every", gt=0)
        config = DriftBenchConfig(rate=rate, seconds=seconds, window_every_s=window_every)
        app = build()
        app.ensure_platform()
        results = run_drift_bench(app, config, _say(as_json))
        _print_results("slipstream bench drift", results, as_json)


@bench_app.command("replay")
def replay(
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON only.")] = False,
    days: Annotated[int, typer.Option(help="Simulated days loaded through the engine before the window (>= 14).")] = 21,
    window_events: Annotated[int, typer.Option(help="Held-out transactions scored in the recorded window.")] = 20_000,
    backends: Annotated[
        str, typer.Option(help="Throwaway platforms to start and time; the replay runs on the first that starts.")
    ] = "testcontainers,local",
    lateness: Annotated[
        float | None, typer.Option("--lateness-s", help="Allowed lateness of the run (default: the settings').")
    ] = None,
) -> None:
    """Record a window of a real production (the engine and the Kafka scorer over held-out simulated days) and replay
    it at full speed on a throwaway platform: window events/s end to end, history records/s through the engine,
    platform start per backend, CPU per replayed event (this process and the engine's), where the window's time goes,
    the diff (0 failing), and the raw produce + consume rate of the same records on the same broker with the ratio."""
    from rich.progress import Progress

    from slipstream.bench.replay_bench import BACKENDS, ReplayBenchConfig, run_replay_bench

    with friendly_errors():
        chosen = check_choices(backends, BACKENDS, "--backends")
        check_number(days, "--days", ge=14)
        check_number(window_events, "--window-events", ge=1)
        if lateness is not None:
            check_number(lateness, "--lateness-s", gt=0)
        config = ReplayBenchConfig(days=days, window_events=window_events, backends=chosen, lateness_s=lateness)
        with Progress(console=console, transient=True) as bar:
            tasks: dict[str, Any] = {}

            def progress(task: str, done: int, total: int | None) -> None:
                if task not in tasks:
                    tasks[task] = bar.add_task(task, total=total)
                bar.update(tasks[task], completed=done, total=total)

            results = run_replay_bench(build(), config, _say(as_json), progress)
        _print_results("slipstream bench replay", results, as_json)


@bench_app.command("state-memory")
def state_memory(
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON only.")] = False,
    entities: Annotated[str, typer.Option(help="Entity counts measured (one fresh process each).")] = "1000,5000,20000",
    days: Annotated[
        float, typer.Option(help="Days every entity is active (steady part; past the 30-day reach).")
    ] = 40.0,
    per_day: Annotated[float, typer.Option(help="Transactions per entity and day.")] = 2.0,
) -> None:
    """The engine stage's memory against its entity count (no broker): RSS per state held, and with entities coming
    and going, the states and RSS held with eviction and without."""
    from slipstream.bench.state_memory import StateMemoryConfig, run_state_memory_bench

    with friendly_errors():
        check_number(days, "--days", gt=0)
        check_number(per_day, "--per-day", gt=0)
        config = StateMemoryConfig(entities=_counts(entities, "--entities"), days=days, per_day=per_day)
        _print_results("slipstream bench state-memory", run_state_memory_bench(config), as_json)
