"""``--runtime`` of the commands that run a monitoring processor (outcomes; drift and shadow to follow): which runtime
hosts it, checked before anything starts, defaulting to the settings' (``SLIPSTREAM_ENGINE_RUNTIME``)."""

from __future__ import annotations

from typing import Annotated

import typer

from slipstream.cli.options import check_choices
from slipstream.exceptions import InputError
from slipstream.streams.engine.settings import RUNTIMES

ProcessorRuntimeOpt = Annotated[
    str | None,
    typer.Option(
        help="What hosts the processor: kafka (a confluent-kafka group member with its transactions) or faust (a "
        "Faust app with an aiokafka transactional producer); default SLIPSTREAM_ENGINE_RUNTIME or kafka. Exactly once "
        "on both.",
    ),
]


def check_runtime(value: str | None) -> str | None:
    """``--runtime``: one of the runtimes (None: the settings')."""
    if value is not None and len(check_choices(value, RUNTIMES, "--runtime")) != 1:
        msg = f"--runtime: one runtime, got {value!r}"
        raise InputError(msg)
    return value


__all__ = ["ProcessorRuntimeOpt", "check_runtime"]
