"""The HTTP scorer as an ASGI app factory, for `slipstream serve --workers N` (uvicorn imports it in each worker;
each builds its own scorer, model slots and model-events watcher from the same settings)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from slipstream.serving.http import FraudFastPath


def create() -> FraudFastPath:
    from slipstream.app import Slipstream
    from slipstream.serving.http import create_app
    from slipstream.settings import load_settings

    settings = load_settings()
    return create_app(Slipstream(settings).scoring_service(), max_body_bytes=settings.http_max_body_bytes)
