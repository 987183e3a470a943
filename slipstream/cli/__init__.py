"""The `slipstream` command line."""

from __future__ import annotations

import faulthandler
import os

import typer

from slipstream.cli.bench import bench_app
from slipstream.cli.deadletters import dead_letters_app
from slipstream.cli.demo import demo
from slipstream.cli.drift import drift
from slipstream.cli.drill import drill
from slipstream.cli.evaluate import evaluate_app
from slipstream.cli.events import produce, schemas_app, tail
from slipstream.cli.features import backfill, features_app
from slipstream.cli.inputs import InputsCommand
from slipstream.cli.loop import loop_app
from slipstream.cli.models import models_app, train
from slipstream.cli.monitor import monitor, report
from slipstream.cli.outcomes import outcomes
from slipstream.cli.platform import infra_app, topics_app
from slipstream.cli.replay import record_app, replay
from slipstream.cli.serving import score_stream, serve
from slipstream.cli.shadow import shadow
from slipstream.cli.simulate import simulate_app
from slipstream.cli.ui import ui

app = typer.Typer(
    name="slipstream",
    help=(
        "Real-time ML on Kafka: Avro contracts with dead letters, exact streaming features into Feast/Redis,"
        " LightGBM models as ONNX behind a parity gate in MLflow, and a scorer (HTTP and Kafka) with lineage and"
        " hot swaps; challengers shadowed on the champion's exact inputs, predictions joined to their delayed"
        " labels; drift detection and a closed loop (retrain, shadow, gated promotion, rollback) by policy, proven"
        " by drills."
        " Record a window of production and replay it on a throwaway platform with a diff.\n\n"
        "Settings come from SLIPSTREAM_* environment variables (or .env); KAFKA_BOOTSTRAP_SERVERS and REDIS_URL "
        "point Slipstream at existing services instead of starting its own."
    ),
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(infra_app, name="infra")
app.add_typer(topics_app, name="topics")
app.add_typer(schemas_app, name="schemas")
app.add_typer(simulate_app, name="simulate")
app.add_typer(features_app, name="features")
app.add_typer(bench_app, name="bench")
app.add_typer(models_app, name="models")
app.add_typer(evaluate_app, name="evaluate")
app.add_typer(dead_letters_app, name="dead-letters")
app.command(cls=InputsCommand)(produce)
app.command()(tail)
app.command()(demo)
app.command(cls=InputsCommand)(backfill)
app.command(cls=InputsCommand)(train)
app.command()(serve)
app.command("score-stream")(score_stream)
app.command()(shadow)
app.command()(outcomes)
app.command()(monitor)
app.command()(report)
app.command()(drift)
app.add_typer(loop_app, name="loop")
app.command()(drill)
app.command()(ui)
app.add_typer(record_app, name="record")
app.command()(replay)


def main() -> None:
    # A crash in native code (librdkafka, onnxruntime, pyarrow) prints the Python stack of every thread instead of
    # a bare "Segmentation fault"; the stage and worker processes it spawns inherit the setting.
    os.environ.setdefault("PYTHONFAULTHANDLER", "1")
    faulthandler.enable()
    app()
