"""What every command shares: the console, building the app from settings, and turning errors into messages."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import typer
from rich.console import Console

from slipstream.app import Slipstream
from slipstream.schemas.exceptions import SlipstreamError
from slipstream.settings import load_settings

console = Console(stderr=True)
out = Console()
T = TypeVar("T")


def build(**overrides: object) -> Slipstream:
    """The composition root for a command, from the environment plus explicit overrides."""
    settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
    return Slipstream(settings, progress=lambda text: console.print(f"[dim]{text}[/dim]"))


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Print a Slipstream error as one clear message and exit 1, instead of a traceback."""
    try:
        yield
    except SlipstreamError as exc:
        console.print(f"[bold red]error:[/bold red] {exc}", highlight=False, markup=True)
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]")
        raise typer.Exit(130) from None


def run(fn: Callable[[], T]) -> T:
    with friendly_errors():
        return fn()
