"""The dashboard's drift heat map and its timeline of alarms and decisions, as PNG bytes.

Drawn like :mod:`slipstream.monitoring.report`'s plots: matplotlib's object API on the Agg canvas (no pyplot, no
global figure state), so it is safe in a server's background thread. Pure: the same data give the same bytes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Colormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from slipstream.monitoring.dashboard_data import Heatmap, TimelineEntry

ALARM_KINDS: Final = ("FEATURE_DRIFT", "SCORE_DRIFT", "ERROR_RATE", "FLIP_RATE")
DECISIONS: Final = {  # action: colour, marker; lanes bottom-up in this order after the alarms
    "RETRAIN_STARTED": ("#4c72b0", ">"),
    "RETRAINED": ("#4c72b0", "s"),
    "RETRAIN_FAILED": ("#c44e52", "X"),
    "CHALLENGER_SET": ("#8172b2", "o"),
    "CHALLENGER_REMOVED": ("#8c8c8c", "o"),
    "PROMOTION_HELD": ("#8c8c8c", "P"),
    "CHALLENGER_REJECTED": ("#c44e52", "P"),
    "PROMOTED": ("#55a868", "*"),
    "ROLLED_BACK": ("#dd8452", "v"),
    "REGISTERED": ("#8c8c8c", "."),
    "REFUSED": ("#c44e52", "."),
}
_ALARM_COLOUR: Final = "#d62728"
_MAX_TICKS: Final = 12
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def heatmap_png(maps: Sequence[Heatmap]) -> bytes:
    """One panel per model: rows the subjects, columns the windows by window end; alarmed windows marked above
    the panel (red triangles), a cell whose subject moved marked with a dot, a change of champion with a line."""
    heights = [max(1.6, 0.32 * len(m.subjects) + 1.2) for m in maps]
    figure = _figure(11, sum(heights) + 0.4)
    panels = figure.subplots(len(maps), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    for axes, m in zip(panels, maps, strict=True):
        values = np.array(m.values, dtype=np.float64).reshape(len(m.subjects), len(m.window_ends))
        finite = values[np.isfinite(values)]
        top = max(2.0 if m.scale == "value / threshold" else 3.0, float(finite.max()) if finite.size else 0.0)
        image = axes.imshow(
            np.ma.masked_invalid(values), aspect="auto", cmap=_cmap(), vmin=0.0, vmax=top, interpolation="nearest"
        )
        figure.colorbar(image, ax=axes, label=m.scale, fraction=0.03, pad=0.01)
        rows, cols = np.nonzero(np.array(m.moved, dtype=bool).reshape(values.shape))
        axes.scatter(cols, rows, s=10, c="black", marker="o")
        alarmed = [j for j, a in enumerate(m.alarmed) if a]
        axes.scatter(alarmed, [-0.75] * len(alarmed), marker="v", c=_ALARM_COLOUR, s=36, clip_on=False)
        for j in range(1, len(m.versions)):
            if m.versions[j] != m.versions[j - 1]:
                axes.axvline(j - 0.5, color="#1f77b4", lw=1.5, ls="--")
                axes.text(j - 0.4, len(m.subjects) - 0.4, f"v{m.versions[j]}", color="#1f77b4", fontsize="small")
        axes.set_yticks(range(len(m.subjects)), m.subjects, fontsize="small")
        step = max(1, math.ceil(len(m.window_ends) / _MAX_TICKS))
        ticks = list(range(0, len(m.window_ends), step))
        axes.set_xticks(ticks, [m.window_ends[j].strftime("%m-%d %H:%M") for j in ticks], rotation=30, ha="right")
        axes.set_ylim(len(m.subjects) - 0.5, -1.2)
        axes.set_title(
            f"{m.model_name}: drift per subject and window (champion v{m.versions[0]}"
            f"{' → v' + m.versions[-1] if m.versions[-1] != m.versions[0] else ''}); "
            f"▼ alarmed window ({sum(m.alarmed)} of {len(m.alarmed)}), • moved",
            fontsize="medium",
        )
        axes.set_xlabel("window end (event time, UTC)")
    return _png(figure)


def _cmap() -> Colormap:
    from matplotlib import colormaps

    return colormaps["YlOrRd"].with_extremes(bad="#eeeeee")  # bad: a subject not measured in a window


def _days(t: datetime) -> float:
    """Matplotlib's date number (days since its default epoch, 1970-01-01 UTC)."""
    return (t - _EPOCH) / timedelta(days=1)


def timeline_png(entries: Sequence[TimelineEntry]) -> bytes:
    """Alarms (by kind) and decisions (by action) on lanes over event time; only entries with an event time."""
    timed = [(e, e.time) for e in entries if e.time is not None]
    lanes = [k for k in ALARM_KINDS if any(e.kind == k for e, _t in timed if e.source == "drift")]
    lanes += [a for a in DECISIONS if any(e.kind == a for e, _t in timed if e.source == "model-events")]
    lanes += sorted({e.kind for e, _t in timed} - set(lanes))
    figure = _figure(11, max(2.2, 0.42 * len(lanes) + 1.4))
    axes = figure.add_subplot()
    for y, lane in enumerate(lanes):
        mine = [(e, _days(t)) for e, t in timed if e.kind == lane]
        drift = mine[0][0].source == "drift"
        colour, marker = (_ALARM_COLOUR, "^") if drift else DECISIONS.get(lane, ("#333333", "o"))
        axes.scatter([x for _e, x in mine], [y] * len(mine), c=colour, marker=marker, s=70, zorder=3)
        for e, x in [] if drift else mine:
            axes.annotate(f"v{e.version}", (x, y), xytext=(4, 5), textcoords="offset points", fontsize="x-small")
    axes.xaxis_date()
    axes.set_yticks(range(len(lanes)), [k.lower().replace("_", " ") for k in lanes], fontsize="small")
    axes.set_ylim(-0.7, len(lanes) - 0.3)
    axes.grid(alpha=0.3)
    axes.set_xlabel("event time (UTC): alarms at their window's end, decisions at the loop's stream time")
    axes.set_title("Drift alarms (▲) and the closed loop's decisions", fontsize="medium")
    axes.legend(
        handles=[
            Line2D([], [], ls="", marker="^", color=_ALARM_COLOUR, label="drift alarm"),
            Line2D([], [], ls="", marker="*", color=DECISIONS["PROMOTED"][0], label="promoted"),
            Line2D([], [], ls="", marker="P", color=DECISIONS["CHALLENGER_REJECTED"][0], label="rejected / failed"),
        ],
        fontsize="small",
        loc="upper left",
    )
    figure.autofmt_xdate()
    return _png(figure)


__all__ = ["ALARM_KINDS", "DECISIONS", "heatmap_png", "timeline_png"]
