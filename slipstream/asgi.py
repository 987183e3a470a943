"""The HTTP scorer as an ASGI app factory, for `slipstream serve --workers N` (uvicorn imports it in each worker;
each builds its own scorer, model slots and model-events watcher from the same settings, tokens included)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from slipstream.serving.http import FraudFastPath


def create() -> FraudFastPath:
    from slipstream.app import Slipstream
    from slipstream.settings import load_settings

    return Slipstream(load_settings()).http_app()
