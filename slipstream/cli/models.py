"""`slipstream train` and `slipstream models list|promote|rollback`: the model registry from the command line."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from slipstream.app import Slipstream
from slipstream.cli.common import build, console, friendly_errors, out
from slipstream.cli.inputs import reads
from slipstream.cli.options import check_choice, check_date
from slipstream.cli.simulate import FraudDataOpt, fraud_data, fraud_files
from slipstream.exceptions import InputError

if TYPE_CHECKING:
    from slipstream.models.registry import ModelRegistry, RegisteredModel
    from slipstream.schemas.transport import EventProducer

models_app = typer.Typer(help="Registered models: list versions, promote, roll back.", no_args_is_help=True)

DEFAULT_TRAIN = ("2018-07-25", "2018-08-01")  # end exclusive: 07-25..07-31
DEFAULT_VALID = ("2018-08-08", "2018-08-15")  # 08-08..08-14, a week after training (label delay)

Name = Annotated[str, typer.Argument(help="Registered model name, e.g. fraud.")]
Publish = Annotated[bool, typer.Option(help="Publish the ModelEvent on the model-events topic.")]


def registry_for(app: Slipstream) -> ModelRegistry:
    """The MLflow registry of this state directory (or of ``SLIPSTREAM_MLFLOW_TRACKING_URI`` when set)."""
    return app.model_registry


@models_app.command("list")
def list_models(name: Annotated[str, typer.Option(help="Registered model name.")] = "fraud") -> None:
    """Versions of a model, newest first, with aliases and metrics."""
    with friendly_errors():
        versions = registry_for(build()).list_versions(name)
        table = Table(title=f"model {name}")
        for column in ("version", "aliases", "created (UTC)", "metrics"):
            table.add_column(column)
        for v in versions:
            metrics = ", ".join(f"{k}={val:.4g}" for k, val in sorted(v.metrics.items()))
            table.add_row(v.version, ", ".join(v.aliases), v.created.strftime("%Y-%m-%d %H:%M:%S"), metrics)
        out.print(table)


@models_app.command()
def promote(
    name: Name, version: Annotated[str, typer.Argument(help="Version to make champion.")], publish: Publish = True
) -> None:
    """Make VERSION the champion (the previous champion is remembered for rollback)."""
    with friendly_errors():
        app = build()
        producer = app.producer() if publish else None
        event = registry_for(app).promote(name, version, producer=producer)
        console.print(
            f"[green]✓[/green] {name} v{event['version']} is champion (was {event['previous_version'] or 'none'})"
        )


challenger_app = typer.Typer(
    help="Challengers: versions the shadow consumer scores beside the champion, by alias (challenger, challenger-b, "
    "...; any alias starting with SLIPSTREAM_CHALLENGER_ALIAS_PREFIX).",
    no_args_is_help=True,
)
models_app.add_typer(challenger_app, name="challenger")
Alias = Annotated[str, typer.Option(help="Challenger alias; must start with SLIPSTREAM_CHALLENGER_ALIAS_PREFIX.")]


def _challenger_alias(app: Slipstream, alias: str) -> str:
    prefix = app.settings.challenger_alias_prefix
    if not alias.startswith(prefix) or alias == "champion":
        msg = f"--alias {alias!r} must start with {prefix!r} (SLIPSTREAM_CHALLENGER_ALIAS_PREFIX) and not be champion"
        raise InputError(msg)
    return alias


@challenger_app.command("set")
def challenger_set(
    name: Name,
    version: Annotated[str, typer.Argument(help="Version to shadow the champion.")],
    alias: Alias = "challenger",
    publish: Publish = True,
) -> None:
    """Make VERSION a challenger under ALIAS (re-pointed if it existed); running shadow consumers pick it up live."""
    with friendly_errors():
        app = build()
        _challenger_alias(app, alias)
        producer = app.producer() if publish else None
        event = registry_for(app).set_challenger(name, version, alias, producer)
        was = f" (was v{event['previous_version']})" if event["previous_version"] else ""
        console.print(f"[green]✓[/green] {name} v{event['version']} is challenger {alias}{was}")


@challenger_app.command("remove")
def challenger_remove(name: Name, alias: Alias = "challenger", publish: Publish = True) -> None:
    """Remove challenger ALIAS; running shadow consumers stop comparing it."""
    with friendly_errors():
        app = build()
        _challenger_alias(app, alias)
        producer = app.producer() if publish else None
        event = registry_for(app).remove_challenger(name, alias, producer)
        console.print(f"[green]✓[/green] {name}: challenger {alias} (v{event['version']}) removed")


@challenger_app.command("list")
def challenger_list(name: Name) -> None:
    """The challenger aliases of a model and their versions."""
    with friendly_errors():
        app = build()
        found = registry_for(app).challengers(name, app.settings.challenger_alias_prefix)
        table = Table(title=f"challengers of {name}")
        table.add_column("alias")
        table.add_column("version")
        for alias, version in found.items():
            table.add_row(alias, version)
        out.print(table)


@models_app.command()
def rollback(
    name: Name,
    reason: Annotated[str | None, typer.Option(help="Why, recorded in the event.")] = None,
    publish: Publish = True,
) -> None:
    """Make the previous champion the champion again."""
    with friendly_errors():
        app = build()
        producer = app.producer() if publish else None
        event = registry_for(app).rollback(name, producer, reason=reason)
        console.print(f"[green]✓[/green] {name} rolled back to v{event['version']} (from v{event['previous_version']})")


Promote = Annotated[
    bool | None,
    typer.Option(
        "--promote/--no-promote",
        help="Make the new version champion (--promote) or challenger (--no-promote). "
        "Default: champion when the model has none yet, else challenger.",
        show_default=False,
    ),
]


def _window(value: tuple[str, str] | None, option: str) -> None:
    if value is not None and check_date(value[0], option) >= check_date(value[1], option):
        msg = f"{option}: START {value[0]!r} must be before END {value[1]!r}"
        raise InputError(msg)


@reads(fraud_files)
def train(
    kind: Annotated[str, typer.Argument(help="fraud or reco.")] = "fraud",
    train_window: Annotated[
        tuple[str, str] | None, typer.Option(help="fraud: train on START <= t < END (UTC dates).")
    ] = None,
    valid_window: Annotated[
        tuple[str, str] | None, typer.Option(help="fraud: validate (early stopping, threshold) on START <= t < END.")
    ] = None,
    promote: Promote = None,
    publish: Publish = True,
    data: FraudDataOpt = None,
) -> None:
    """Train a model on the simulated data and register it behind the ONNX parity gate: fraud (binary LightGBM on
    the transactions) or reco (LambdaRank ranker on the clickstream). REGISTERED / REFUSED / PROMOTED events go to
    model-events (starting the platform if needed)."""
    with friendly_errors():
        check_choice(kind, ("fraud", "reco"), "KIND")
        _window(train_window, "--train-window")
        _window(valid_window, "--valid-window")
        if kind == "reco" and (data is not None or train_window or valid_window):
            msg = "--data, --train-window and --valid-window are for KIND fraud; reco trains on its own simulation"
            raise InputError(msg)
        path = fraud_data(data) if kind == "fraud" else None
        app = build()
        producer = None
        if publish:
            app.ensure_platform()
            producer = app.producer()
        if path is None:
            _train_reco(app, promote, producer)
        else:
            _train_fraud(app, path, train_window, valid_window, promote, producer)


def _place(
    registry: ModelRegistry, name: str, version: str, promote: bool | None, producer: EventProducer | None
) -> str:
    """Alias a new version: champion when asked, or by default when there is none yet; else challenger."""
    from slipstream.models.registry import CHALLENGER, CHAMPION

    if promote is None:
        promote = registry.alias_version(name, CHAMPION) is None
    if promote:
        registry.promote(name, version, producer=producer)
        return CHAMPION
    registry.set_challenger(name, version, CHALLENGER, producer)
    return CHALLENGER


def _train_reco(app: Slipstream, promote: bool | None, producer: EventProducer | None) -> None:
    """LambdaRank on the simulated clickstream, evaluated on held-out users, registered as model ``reco``: the same
    two calls as the demo (:func:`~slipstream.models.reco.fit_reco`, :func:`~slipstream.models.publish.register_reco`).
    """
    from slipstream.models.publish import register_reco
    from slipstream.models.reco import fit_reco
    from slipstream.streams.simulate.reco import RecoSimConfig, simulate_interactions

    fit = fit_reco(simulate_interactions(RecoSimConfig()), progress=lambda text: console.print(f"[dim]{text}[/dim]"))
    registry = registry_for(app)
    registered, metrics = register_reco(registry, app.settings.reco_model, fit, producer=producer)
    alias = _place(registry, app.settings.reco_model, registered.version, promote, producer)
    _registered(app.settings.reco_model, registered, alias)
    for key, value in sorted(metrics.items()):
        out.print(f"  {key:<24} {value:.4f}")


def _registered(name: str, registered: RegisteredModel, alias: str) -> None:
    console.print(
        f"[green]✓[/green] {name} v{registered.version} registered as {alias} "
        f"(parity max |diff| {registered.parity.max_abs_diff:.2g} on {registered.parity.n:,} rows, "
        f"sha256 {registered.checksum[:12]}…)"
    )


def _train_fraud(
    app: Slipstream,
    path: Path,
    train_window: tuple[str, str] | None,
    valid_window: tuple[str, str] | None,
    promote: bool | None,
    producer: EventProducer | None,
) -> None:
    import pandas as pd

    from slipstream.cli.simulate import labels_path
    from slipstream.models.dataset import data_hash, fraud_training_frame, window
    from slipstream.models.fraud import train_fraud
    from slipstream.models.publish import register_fraud

    console.print(f"[dim]building the training frame from {path}[/dim]")
    frame = fraud_training_frame(pd.read_parquet(path), pd.read_parquet(labels_path(path)))
    train_w, valid_w = _windows(frame, train_window, valid_window)
    train_set, valid_set = window(frame, *train_w), window(frame, *valid_w)
    model = train_fraud(train_set, valid_set, progress=lambda text: console.print(f"[dim]{text}[/dim]"))
    registry = registry_for(app)
    registered, metrics = register_fraud(
        registry,
        "fraud",
        model,
        train_set,
        valid_set,
        data_window=(train_w[0], valid_w[1]),
        data_hash=data_hash(frame),
        producer=producer,
    )
    alias = _place(registry, "fraud", registered.version, promote, producer)
    _registered("fraud", registered, alias)
    for key, value in sorted(metrics.items()):
        out.print(f"  {key:<24} {value:.4f}")


def _windows(
    frame: Any, train_window: tuple[str, str] | None, valid_window: tuple[str, str] | None
) -> tuple[tuple[str, str], tuple[str, str]]:
    """The given windows, else the handbook's, else (data elsewhere in time) the most recent weeks."""
    if train_window and valid_window:
        return train_window, valid_window
    first, last = frame["event_time"].min(), frame["event_time"].max()
    if first.strftime("%Y-%m-%d") <= DEFAULT_TRAIN[0] and last.strftime("%Y-%m-%d") >= DEFAULT_VALID[1]:
        return train_window or DEFAULT_TRAIN, valid_window or DEFAULT_VALID
    end = last.normalize()
    day = timedelta(days=1)
    recent_valid = ((end - 7 * day).strftime("%Y-%m-%d"), end.strftime("%Y-%m-%d"))
    recent_train = ((end - 21 * day).strftime("%Y-%m-%d"), (end - 14 * day).strftime("%Y-%m-%d"))
    return train_window or recent_train, valid_window or recent_valid
