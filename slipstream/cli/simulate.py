"""`slipstream simulate ...`: built-in event simulators."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from slipstream.cli.common import console, friendly_errors
from slipstream.cli.inputs import InputSpec, beside, check_input, check_output_file, spec
from slipstream.exceptions import InputError

simulate_app = typer.Typer(
    help="Generate realistic event streams to publish, backfill and benchmark.", no_args_is_help=True
)


def labels_path(out: Path) -> Path:
    """Where the label events of a simulated transactions file are written: ``X.parquet`` -> ``X.labels.parquet``."""
    return beside(out, "labels")


def simulate_fraud_file(
    out: Path,
    *,
    customers: int = 5000,
    terminals: int = 10000,
    days: int = 183,
    start_date: str = "2018-04-01",
    label_delay_days: float = 7.0,
    show_progress: bool = True,
) -> tuple[int, int]:
    """Simulate, write transactions to ``out`` and labels beside it; return (transactions, frauds)."""
    from slipstream.streams.simulate.fraud import (
        FraudSimConfig,
        label_events,
        simulate_transactions,
        to_transaction_events,
    )

    config = FraudSimConfig(
        n_customers=customers,
        n_terminals=terminals,
        nb_days=days,
        start_date=start_date,
        label_delay=timedelta(days=label_delay_days),
    )
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=not show_progress) as bar:
        task = bar.add_task("simulating customers", total=customers)
        frame = simulate_transactions(config, progress=lambda done, _total: bar.update(task, completed=done))
    events = to_transaction_events(frame)
    events["tx_fraud"] = frame["TX_FRAUD"].to_numpy()
    events["tx_fraud_scenario"] = frame["TX_FRAUD_SCENARIO"].to_numpy()
    out.parent.mkdir(parents=True, exist_ok=True)
    events.to_parquet(out, index=False)
    label_events(frame, config).to_parquet(labels_path(out), index=False)
    return len(frame), int(frame["TX_FRAUD"].sum())


_FRAUD_OPTIONS = {
    "n_customers": "--customers",
    "n_terminals": "--terminals",
    "nb_days": "--days",
    "start_date": "--start-date",
    "label_delay": "--label-delay-days",
}
_RECO_OPTIONS = {"n_users": "--users", "n_items": "--items", "days": "--days", "seed": "--seed"}


def _in_options(exc: ArithmeticError | ValueError, options: dict[str, str]) -> InputError:
    """A simulator's refusal of its config in the command line's terms: ``FraudSimConfig.nb_days`` -> ``--days``."""
    text = str(exc)
    for field, option in options.items():
        text = re.sub(rf"\b\w+Config\.{field}\b", option, text)
    return InputError(text)


FRAUD_DATA_HELP = (
    "Transactions with tx_fraud, labels beside them (columns below); must exist. "
    "Omitted: <state dir>/data/fraud.parquet, simulated there once if missing."
)
#: ``--data`` of the commands that train or measure on fraud data (see :func:`fraud_data`).
FraudDataOpt = Annotated[Path | None, typer.Option("--data", help=FRAUD_DATA_HELP, show_default=False)]


def fraud_data(data: Path | None, *, show_progress: bool = True, option: str = "--data") -> Path:
    """The fraud transactions a command trains or measures on, labels beside them (``X.labels.parquet``), checked.

    ``data`` as given must exist: a mistyped path is an error, never a place to simulate into. Omitted, it is the
    cached simulation ``<SLIPSTREAM_STATE_DIR>/data/fraud.parquet``, simulated there once (the Handbook's data set,
    1.75 M transactions) if it is missing."""
    from slipstream.settings import load_settings

    path = data
    if path is None:
        path = load_settings().state_dir / "data" / "fraud.parquet"
        if not (path.exists() and labels_path(path).exists()):
            console.print(f"[dim]{path} is missing: simulating the Fraud Handbook data set there once…[/dim]")
            simulate_fraud_file(path, show_progress=show_progress)
    check_input(path, spec("training:transactions"), option)
    check_input(labels_path(path), spec("training:labels"), f"{option} (its labels, beside it)")
    return path


def fraud_files() -> list[tuple[str, InputSpec]]:
    """``--data`` of the commands that train or measure on fraud data, for their ``--help``."""
    return [("--data", spec("training:transactions")), ("--data labels (X.labels.parquet)", spec("training:labels"))]


@simulate_app.command("fraud")
def fraud(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Transactions parquet to write (labels beside it: X.labels.parquet).")
    ],
    customers: Annotated[int, typer.Option(help="Number of customers (cards).")] = 5000,
    terminals: Annotated[int, typer.Option(help="Number of payment terminals.")] = 10000,
    days: Annotated[int, typer.Option(help="Days simulated from --start-date.")] = 183,
    start_date: Annotated[str, typer.Option(help="First day (ISO date).")] = "2018-04-01",
    label_delay_days: Annotated[
        float, typer.Option(help="Event-time delay of each label after its transaction.")
    ] = 7.0,
) -> None:
    """The Fraud Detection Handbook's card-transaction simulator; defaults reproduce the published data set
    (1,754,155 transactions, 14,681 frauds). Seeds are the book's, so the output is the same on every machine."""
    from slipstream.streams.simulate.fraud import FraudSimConfig

    with friendly_errors():
        check_output_file(out, "--out")
        try:
            FraudSimConfig(
                n_customers=customers,
                n_terminals=terminals,
                nb_days=days,
                start_date=start_date,
                label_delay=timedelta(days=label_delay_days),
            )
        except (ValueError, OverflowError) as exc:  # OverflowError: a --label-delay-days no timedelta holds
            raise _in_options(exc, _FRAUD_OPTIONS) from exc
        started = time.perf_counter()
        n, frauds = simulate_fraud_file(
            out,
            customers=customers,
            terminals=terminals,
            days=days,
            start_date=start_date,
            label_delay_days=label_delay_days,
        )
        console.print(
            f"[green]✓[/green] {n:,} transactions ({frauds:,} frauds, {frauds / max(n, 1):.3%}) → {out}; "
            f"labels → {labels_path(out)} in {time.perf_counter() - started:.1f} s"
        )


@simulate_app.command("reco")
def reco(
    out: Annotated[Path, typer.Option("--out", "-o", help="Interactions parquet to write (items go beside it).")],
    users: Annotated[int, typer.Option(help="Number of users.")] = 2000,
    items: Annotated[int, typer.Option(help="Number of items.")] = 5000,
    days: Annotated[int, typer.Option(help="Days simulated.")] = 28,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same stream).")] = 42,
) -> None:
    """A clickstream (view, click, add-to-cart, purchase) of users with latent tastes over items whose popularity
    drifts; the simulator keeps the ground truth, so rankers can be evaluated against it."""
    from slipstream.streams.simulate.reco import RecoSimConfig, simulate_interactions

    with friendly_errors():
        check_output_file(out, "--out")
        try:
            config = RecoSimConfig(n_users=users, n_items=items, days=days, seed=seed)
        except ValueError as exc:
            raise _in_options(exc, _RECO_OPTIONS) from exc
        started = time.perf_counter()
        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console) as bar:
            task = bar.add_task("simulating days", total=days)
            simulation = simulate_interactions(config, progress=lambda d, _t: bar.update(task, completed=d))
        out.parent.mkdir(parents=True, exist_ok=True)
        simulation.events.to_parquet(out, index=False)
        items_path = out.with_name(out.stem + ".items.parquet")
        simulation.items.to_parquet(items_path, index=False)
        counts = simulation.events["action"].value_counts().to_dict()
        console.print(
            f"[green]✓[/green] {len(simulation.events):,} interactions {counts} → {out}; items → "
            f"{items_path} in {time.perf_counter() - started:.1f} s"
        )
