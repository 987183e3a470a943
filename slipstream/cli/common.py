"""What every command shares: the console, building the app from settings, turning errors into messages, and
logging — the last two with every URL's credentials masked (:mod:`slipstream.schemas.secrets`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from slipstream.app import Slipstream
from slipstream.exceptions import InputError
from slipstream.schemas.exceptions import SlipstreamError
from slipstream.schemas.secrets import mask_urls
from slipstream.settings import load_settings

console = Console(stderr=True)
out = Console()
T = TypeVar("T")


def build(**overrides: object) -> Slipstream:
    """The composition root for a command, from the environment plus explicit overrides."""
    settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
    return Slipstream(settings, progress=lambda text: console.print(f"[dim]{mask_urls(text)}[/dim]"))


def error(message: object) -> None:
    """One line on stderr, never wrapped (a path or a list of columns stays on the line that names it); a URL in
    it (another library's message may quote one) is shown without its credentials."""
    text = escape(mask_urls(str(message)))
    console.print(f"[bold red]error:[/bold red] {text}", highlight=False, soft_wrap=True)


class MaskingFormatter(logging.Formatter):
    """Log lines, tracebacks included, with every URL's credentials masked."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_urls(super().format(record))


def setup_logging(level: str, fmt: str = "%(asctime)s %(levelname)s %(name)s: %(message)s") -> None:
    """``logging.basicConfig`` for a long-running command, through :class:`MaskingFormatter`."""
    handler = logging.StreamHandler()
    handler.setFormatter(MaskingFormatter(fmt))
    logging.basicConfig(level=level.upper(), handlers=[handler])


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Print an error as one line instead of a traceback: bad input (:class:`InputError`, found before any work
    starts) exits 2 like Typer's usage errors; any other Slipstream error, or a file the system refused, exits 1."""
    try:
        yield
    except InputError as exc:
        error(exc)
        raise typer.Exit(2) from exc
    except SlipstreamError as exc:
        error(exc)
        raise typer.Exit(1) from exc
    except OSError as exc:  # a file that vanished or turned unreadable after its check, a full disk
        error(exc)
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]")
        raise typer.Exit(130) from None


def run(fn: Callable[[], T]) -> T:
    with friendly_errors():
        return fn()
