"""`slipstream bench ...`: benchmarks that print numbers (never timed assertions in tests)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from slipstream.cli.common import build, console, friendly_errors, out
from slipstream.cli.simulate import labels_path, simulate_fraud_file

bench_app = typer.Typer(help="Benchmarks with their baselines measured in the same run.", no_args_is_help=True)


@bench_app.command("features")
def features(
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON only.")] = False,
    days: Annotated[float, typer.Option(help="Days of the simulated stream for the throughput run.")] = 14.0,
    rate: Annotated[float, typer.Option(help="Open-loop rate of the freshness run (events/s).")] = 1000.0,
    seconds: Annotated[float, typer.Option(help="Length of the freshness run.")] = 20.0,
    push_rows: Annotated[int, typer.Option(help="Rows written through Feast push for the baseline.")] = 2000,
    parts: Annotated[str, typer.Option(help="Which parts to run: online,faust,freshness,push,offline.")] = (
        "online,faust,freshness,push,offline"
    ),
    data: Annotated[Path, typer.Option(help="Simulated transactions (made once, then reused).")] = Path(
        ".slipstream/data/fraud.parquet"
    ),
) -> None:
    """Online engine events/s and freshness p50/p99, Feast's per-event push on the same rows, offline events/s."""
    from slipstream.bench.features_bench import FeatureBenchConfig, run_features_bench

    with friendly_errors():
        app = build()
        app.ensure_platform()
        if not data.exists():
            simulate_fraud_file(data, show_progress=not as_json)
        config = FeatureBenchConfig(
            data,
            labels_path(data),
            days=days,
            rate=rate,
            freshness_seconds=seconds,
            push_rows=push_rows,
            parts=tuple(p.strip() for p in parts.split(",") if p.strip()),
        )
        results = run_features_bench(app, config, (lambda _m: None) if as_json else console.print)
        if as_json:
            out.print_json(json.dumps(results))
            return
        table = Table("metric", "value", title="slipstream bench features")
        for key, value in results.items():
            table.add_row(key, f"{value:,}" if isinstance(value, int | float) else str(value))
        out.print(table)
