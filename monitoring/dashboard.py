"""The dashboard page: :class:`~slipstream.monitoring.dashboard_data.DashboardData` → one self-contained HTML page.

Pure (data in, text out). The page is :func:`slipstream.monitoring.report.render` given the data: model versions and
their roles, realised vs estimated AP per version over event-time days, the flip rate per challenger, label coverage,
the drift heat map, the timeline of alarms and decisions, and the summary tables. Every chart is an
``<img class=chart>`` whose ``id`` is one of :data:`CHARTS`; a section with nothing to draw yet shows a
``<p class=empty id=<chart>-empty>`` saying so instead (never an error). ``slipstream ui`` serves it,
``slipstream report`` writes it to a file.
"""

from __future__ import annotations

from typing import Final

from slipstream.monitoring.dashboard_data import DashboardData
from slipstream.monitoring.report import PLOTS
from slipstream.monitoring.report import render as render_report

CHARTS: Final = (*PLOTS, "drift_heatmap", "timeline")
TITLE: Final = "Slipstream: models in production"


def render(
    data: DashboardData, *, title: str = TITLE, refresh_s: float | None = None, status: str | None = None
) -> str:
    """The page of ``data``; ``refresh_s``: the browser reloads it that often; ``status``: a line under the title."""
    return render_report(data.summary(), title, data=data, refresh_s=refresh_s, status=status)


__all__ = ["CHARTS", "TITLE", "render"]
