"""`slipstream evaluate ...`: our models beside published results, on the same simulated data and protocol."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from slipstream.cli.common import console, friendly_errors, out
from slipstream.cli.inputs import InputsCommand, reads
from slipstream.cli.options import check_choice, check_number
from slipstream.cli.simulate import FraudDataOpt, fraud_data, fraud_files, labels_path

evaluate_app = typer.Typer(help="Evaluate models against published benchmarks.", no_args_is_help=True)
METRICS = ("auc_roc", "average_precision", "card_precision_at_100")


def _fmt(value: Any) -> str:
    if isinstance(value, list):
        return "–".join(f"{v:.3f}" for v in value)
    return f"{value:.3f}"


@evaluate_app.command("fraud", cls=InputsCommand)
@reads(fraud_files)
def fraud(
    protocol: Annotated[str, typer.Option(help="handbook: the book's chapter-3 split plus its 4-fold rolling one.")] = (
        "handbook"
    ),
    label_delay: Annotated[
        str, typer.Option(help="handbook (labels exactly 7 days later) or realistic (delayed, maturing labels).")
    ] = "handbook",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    data: FraudDataOpt = None,
) -> None:
    """Train LightGBM on point-in-time features and score it with the Fraud Handbook's protocol (AUC ROC, Average
    Precision, Card Precision@100), hyper-parameters chosen on validation weeks only; prints the book's table beside."""
    import pandas as pd

    from slipstream.models.dataset import LABEL_DELAYS
    from slipstream.models.evaluation import PROTOCOLS, evaluate_fraud

    with friendly_errors():
        check_choice(protocol, PROTOCOLS, "--protocol")
        check_choice(label_delay, LABEL_DELAYS, "--label-delay")
        path = fraud_data(data, show_progress=not as_json)
        tx = pd.read_parquet(path)
        labels = pd.read_parquet(labels_path(path))
        say = (lambda _m: None) if as_json else (lambda m: console.print(f"[dim]{m}[/dim]"))
        report = evaluate_fraud(tx, labels, protocol=protocol, label_delay=label_delay, progress=say)
        if as_json:
            out.print_json(json.dumps(report, default=str))
            return
        table = Table("", *METRICS, title=f"Fraud: Slipstream LightGBM vs the Handbook ({label_delay} labels)")
        table.add_row("[bold]Slipstream, single week", *(_fmt(report["single_week"][m]) for m in METRICS))
        rolling = report["rolling"]
        table.add_row(
            "[bold]Slipstream, rolling (4 folds)",
            *(f"{rolling[m]['mean']:.3f} ± {rolling[m]['std']:.3f}" for m in METRICS),
        )
        for name, values in report["published"]["single_week"]["models"].items():
            table.add_row(f"book: {name} (single week)", *(_fmt(values[m]) for m in METRICS))
        table.add_row(
            "book: tuned XGBoost (rolling, best)", *(_fmt(report["published"]["rolling"]["best"][m]) for m in METRICS)
        )
        out.print(table)
        test_set = report["test_set"]
        out.print(f"test set: {test_set}   ({report['seconds']} s)")


@evaluate_app.command("reco")
def reco(
    seed: Annotated[int, typer.Option(help="Simulation and training seed.")] = 42,
    k: Annotated[int, typer.Option(help="Cut-off of the ranking metrics.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Train the LambdaRank ranker on point-in-time features and score held-out users' next-week clicks against
    the simulator's ground truth (NDCG@k, recall@k), beside a popularity baseline on the same candidates."""
    from slipstream.models.reco import evaluate_reco
    from slipstream.streams.simulate.reco import RecoSimConfig, simulate_interactions

    with friendly_errors():
        check_number(seed, "--seed", ge=0)
        check_number(k, "--k", ge=1)
        say = (lambda _m: None) if as_json else (lambda m: console.print(f"[dim]{m}[/dim]"))
        report = evaluate_reco(simulate_interactions(RecoSimConfig(seed=seed)), k=k, seed=seed, progress=say)
        if as_json:
            out.print_json(json.dumps(report, default=str))
            return
        table = Table("", f"ndcg@{k}", f"recall@{k}", title="Recommendations: ranker vs popularity (held-out users)")
        ndcg, recall = f"ndcg_at_{k}", f"recall_at_{k}"
        table.add_row("[bold]Slipstream LambdaRank", f"{report[ndcg]:.3f}", f"{report[recall]:.3f}")
        popularity = report["popularity"]
        table.add_row("popularity baseline", f"{popularity[ndcg]:.3f}", f"{popularity[recall]:.3f}")
        out.print(table)
        out.print(
            f"{report['users']} held-out users, {report['candidates_per_user']:.0f} candidates each, "
            f"{report['seconds']} s"
        )
