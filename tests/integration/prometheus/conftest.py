from __future__ import annotations

from tests.unit.deploy.conftest import prometheus_tools

__all__ = ["prometheus_tools"]  # the same session fixture: prometheus and promtool, installed when missing
