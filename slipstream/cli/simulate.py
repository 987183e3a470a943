"""`slipstream simulate ...`: built-in event simulators."""

from __future__ import annotations

import re
import time
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from slipstream.cli.common import console, friendly_errors
from slipstream.cli.inputs import InputSpec, beside, check_input, check_output_file, spec
from slipstream.exceptions import InputError

if TYPE_CHECKING:
    from slipstream.streams.simulate.fraud import FraudSimConfig
    from slipstream.streams.simulate.scenarios import DriftScenario

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
    scenario: DriftScenario | None = None,
    show_progress: bool = True,
) -> tuple[int, int]:
    """Simulate (with a drift ``scenario`` if given), write transactions to ``out`` and labels beside it; return
    (transactions, frauds)."""
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
        frame = simulate_transactions(
            config, progress=lambda done, _total: bar.update(task, completed=done), scenario=scenario
        )
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


# One line per scenario of slipstream.streams.simulate.scenarios (kept here: importing it would load pandas for --help).
SCENARIO_HELP = {
    "none": "the Fraud Handbook's data, unchanged",
    "new-fraud-pattern": "card testing, bursts of small night-time frauds on 10 cards a day (scenario 4)",
    "covariate-shift": "amounts x1.3 and 15% of transactions at 50 hub terminals, same fraud rules",
}
SCENARIO_OPTION_HELP = "Drift from --drift-start on. " + "; ".join(f"{k}: {v}" for k, v in SCENARIO_HELP.items()) + "."


def drift_start(text: str | None) -> int | date | None:
    """``--drift-start``: a day number of the simulation (0 = --start-date) or an ISO date; ``None`` stays None."""
    if text is None:
        return None
    if re.fullmatch(r"[+-]?\d+", text.strip()):
        return int(text)
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        msg = f"--drift-start: {text!r} is neither a day number nor an ISO date (YYYY-MM-DD)"
        raise InputError(msg) from exc


def drift_scenario(name: str, start: str | None, config: FraudSimConfig) -> DriftScenario:
    """``--scenario`` and ``--drift-start`` as a scenario checked against the simulation's config."""
    from slipstream.streams.simulate.scenarios import DriftScenario

    start_day = drift_start(start)
    try:
        drift = DriftScenario(name, start_day=start_day)
        drift.first_day(config)
    except ValueError as exc:
        option = "--drift-start" if "start_day" in str(exc) else "--scenario"
        msg = f"{option}: {str(exc).removeprefix('start_day ')}"
        raise InputError(msg) from exc
    return drift


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
    scenario: Annotated[str, typer.Option(help=SCENARIO_OPTION_HELP)] = "none",
    drift_start_day: Annotated[
        str | None,
        typer.Option(
            "--drift-start",
            help="First day of the drift: a day number (0 = --start-date) or an ISO date.",
            show_default="the middle day, --days // 2",
        ),
    ] = None,
) -> None:
    """The Fraud Detection Handbook's card-transaction simulator; defaults reproduce the published data set
    (1,754,155 transactions, 14,681 frauds). Seeds are the book's, so the output is the same on every machine.
    --scenario adds a drift from --drift-start on (docs/scenarios.md)."""
    from slipstream.streams.simulate.fraud import FraudSimConfig

    with friendly_errors():
        check_output_file(out, "--out")
        try:
            config = FraudSimConfig(
                n_customers=customers,
                n_terminals=terminals,
                nb_days=days,
                start_date=start_date,
                label_delay=timedelta(days=label_delay_days),
            )
        except (ValueError, OverflowError) as exc:  # OverflowError: a --label-delay-days no timedelta holds
            raise _in_options(exc, _FRAUD_OPTIONS) from exc
        drift = drift_scenario(scenario, drift_start_day, config)
        started = time.perf_counter()
        n, frauds = simulate_fraud_file(
            out,
            customers=customers,
            terminals=terminals,
            days=days,
            start_date=start_date,
            label_delay_days=label_delay_days,
            scenario=None if drift.name == "none" else drift,
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
