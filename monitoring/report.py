"""An HTML page of realised and estimated performance per model version, from a
:meth:`~slipstream.monitoring.performance.PerformanceBook.summary` that includes the ``day`` and ``all`` periods.

Three plots, drawn with matplotlib's object API on the Agg canvas (no pyplot, no global figure state, no display)
and embedded as base64 PNG, so the page is one self-contained file: realised AP (solid) and estimated AP (dashed,
the CBPE estimate of the predictions still awaiting labels) per version over event-time days; the flip rate per
challenger over days; label coverage per version over days. Below them the summary tables: ``all`` per version and
role, every day, and rank agreement per challenger ranker. Every estimated figure says "estimated".

Given a :class:`~slipstream.monitoring.dashboard_data.DashboardData`, the page is the dashboard's (``slipstream ui``
serves it, ``slipstream report`` writes it): the model versions and their roles first, then the plots, the drift heat
map (:mod:`slipstream.monitoring.dashboard_charts`) and the timeline of alarms and decisions with their reasons; a
section whose topics are empty says "no data yet". Every chart is an ``<img class=chart>`` with a stable ``id`` and
alt text; a small script marks each one ``data-loaded`` once the browser has decoded it.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import Any, Final

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from slipstream.monitoring.dashboard_charts import heatmap_png, timeline_png
from slipstream.monitoring.dashboard_data import DashboardData
from slipstream.monitoring.exceptions import ReportError

PLOTS: Final = ("performance", "flip_rate", "coverage")
_STYLE: Final = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}td.t{text-align:left}"
    "img{max-width:100%;border:1px solid #eee;margin:0.5em 0;display:block}.est{color:#8a5a00}"
    ".empty{color:#777;font-style:italic}#status{color:#555}"
)
COLUMNS: Final = (
    ("model", "model_name"),
    ("version", "model_version"),
    ("role", "role"),
    ("period", "key"),
    ("seen", "seen"),
    ("labelled", "labelled"),
    ("unlabelled at horizon", "unlabelled_at_horizon"),
    ("awaiting", "awaiting"),
    ("coverage", "label_coverage"),
    ("mature", "mature"),
    ("AUC", "auc_roc"),
    ("AP", "average_precision"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("CP@k", "card_precision_at_100"),
    ("estimated AP", "estimated.average_precision"),
    ("estimated AUC", "estimated.auc_roc"),
    ("estimate trusted", "calibration.trusted"),
    ("flip rate", "flip_rate"),
    ("delay p50 h", "label_delay_hours.p50"),
)
RANK_COLUMNS: Final = (
    ("model", "model_name"),
    ("champion", "champion_version"),
    ("challenger", "challenger_version"),
    ("period", "key"),
    ("comparisons", "comparisons"),
    ("overlap@k", "mean_overlap_at_k"),
    ("Kendall tau", "mean_kendall_tau"),
    ("NDCG@k", "mean_ndcg_at_k"),
    ("top changed", "top_changed_rate"),
)


def _get(row: dict[str, Any], path: str) -> Any:
    value: Any = row
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape(str(value))


def _series(rows: list[dict[str, Any]], path: str, keep: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Per version label: (days, values) of the day rows that have ``path``."""
    out: dict[str, tuple[list[date], list[float]]] = {}
    for row in rows:
        value = _get(row, path)
        if row["period"] != "day" or value is None or not keep(row):
            continue
        days, values = out.setdefault(f"{row['model_name']} v{row['model_version']} ({row['role'].lower()})", ([], []))
        days.append(date.fromisoformat(row["key"]))
        values.append(float(value))
    return out


def _png(draw: Callable[[Axes], None], title: str, ylabel: str) -> bytes:
    figure = Figure(figsize=(9, 3.6), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    draw(axes)
    axes.set_title(title)
    axes.set_xlabel("event time (UTC day)")
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize="small", loc="best")
    figure.autofmt_xdate()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def plots(summary: dict[str, Any]) -> dict[str, bytes]:
    """The report's three plots as PNG bytes, by name (:data:`PLOTS`)."""
    rows = [r for r in summary.get("performance", []) if r["period"] == "day"]
    if not rows:
        msg = "nothing to report: no day rows in the summary (no predictions or outcomes read, or --by without day)"
        raise ReportError(msg)
    realised = _series(rows, "average_precision", lambda r: True)
    estimated = _series(rows, "estimated.average_precision", lambda r: True)
    flips = _series(rows, "flip_rate", lambda r: r["role"] == "CHALLENGER")
    coverage = _series(rows, "label_coverage", lambda r: True)

    def performance(axes: Axes) -> None:
        for i, (name, (days, values)) in enumerate(sorted(realised.items())):
            axes.plot(days, values, marker="o", color=f"C{i}", label=f"{name} realised")
            if name in estimated:
                est_days, est_values = estimated[name]
                axes.plot(est_days, est_values, ls="--", marker="x", color=f"C{i}", label=f"{name} estimated")
        for j, name in enumerate(sorted(set(estimated) - set(realised))):
            axes.plot(
                estimated[name][0],
                estimated[name][1],
                ls="--",
                marker="x",
                color=f"C{j + len(realised)}",
                label=f"{name} estimated",
            )
        axes.set_ylim(0, 1)

    def lines(series: dict[str, Any], limit: float | None) -> Callable[[Axes], None]:
        def draw(axes: Axes) -> None:
            for i, (name, (days, values)) in enumerate(sorted(series.items())):
                axes.plot(days, values, marker="o", color=f"C{i}", label=name)
            if not series:
                axes.text(0.5, 0.5, "no challenger comparisons", ha="center", va="center", transform=axes.transAxes)
            if limit is not None:
                axes.set_ylim(0, limit)

        return draw

    top_flip = max([max(v) for _d, v in flips.values()] + [0.05]) * 1.15
    return {
        "performance": _png(
            performance, "Average precision: realised (labelled) and estimated (awaiting labels)", "average precision"
        ),
        "flip_rate": _png(
            lines(flips, top_flip), "Flip rate per challenger (decision differs from champion's)", "flip rate"
        ),
        "coverage": _png(lines(coverage, 1.05), "Label coverage (labelled / seen)", "coverage"),
    }


def _table(
    rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], text_columns: int = 4, table_id: str = ""
) -> str:
    head = "".join(
        f"<th class=est>{html.escape(name)}</th>" if name.startswith("estimated") else f"<th>{html.escape(name)}</th>"
        for name, _path in columns
    )
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class=t>{_cell(_get(r, path))}</td>" if i < text_columns else f"<td>{_cell(_get(r, path))}</td>"
            for i, (_name, path) in enumerate(columns)
        )
        + "</tr>"
        for r in rows
    )
    ident = f" id={table_id}" if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(name: str, png: bytes, alt: str) -> str:
    encoded = base64.b64encode(png).decode()
    return f"<img id={name} class=chart alt='{html.escape(alt, quote=True)}' src='data:image/png;base64,{encoded}'>"


def _empty(name: str, what: str) -> str:
    return f"<p class=empty id={name}-empty>{html.escape(what)}: no data yet.</p>"


def _versions(data: DashboardData, summary: dict[str, Any]) -> str:
    versions = data.versions(summary)
    if not versions:
        return _empty("versions", "Model versions (model-events)")
    rows = [
        {
            "model": v.model_name,
            "version": v.version,
            "role": v.role,
            "aliases": ", ".join(v.aliases),
            "since": v.since.strftime("%Y-%m-%d %H:%M:%S") if v.since else None,
            "last": v.last_action,
            "reason": v.reason,
        }
        for v in versions
    ]
    columns = [(n, n) for n in ("model", "version", "role", "aliases")]
    columns += [("since (wall clock, UTC)", "since"), ("last change", "last"), ("reason", "reason")]
    return _table(rows, columns, text_columns=7, table_id="versions-table")


def _drift(data: DashboardData) -> str:
    maps = data.heatmaps()
    if not maps:
        return _empty("drift_heatmap", "Drift per feature (drift-windows)")
    alt = "drift heat map: " + "; ".join(
        f"{m.model_name} {len(m.subjects)} subjects x {len(m.window_ends)} windows, {sum(m.alarmed)} alarmed"
        for m in maps
    )
    return _img("drift_heatmap", heatmap_png(maps), alt)


def _timeline(data: DashboardData) -> str:
    entries = data.timeline()
    if not entries:
        return _empty("timeline", "Alarms (drift) and decisions (model-events)")
    timed = [e for e in entries if e.time is not None]
    chart = (
        _img("timeline", timeline_png(entries), f"timeline of {len(timed)} alarms and decisions in event time")
        if timed
        else "<p class=empty id=timeline-empty>No alarm or decision has an event time yet (changes made by hand "
        "have only a wall clock): see the table.</p>"
    )
    rows = [
        {
            "time": e.time.strftime("%Y-%m-%d %H:%M") if e.time else None,
            "wall": e.wall.strftime("%Y-%m-%d %H:%M:%S"),
            "source": e.source,
            "kind": e.kind,
            "model": f"{e.model_name} v{e.version}" if e.version else e.model_name,
            "detail": e.detail,
            "reason": e.reason,
        }
        for e in reversed(entries)
    ]
    columns = [("event time", "time"), ("wall clock", "wall")]
    columns += [(n, n) for n in ("source", "kind", "model", "detail", "reason")]
    return chart + _table(rows, columns, text_columns=7, table_id="timeline-table")


_LOADED: Final = (  # marks each chart once the browser has decoded it (data-loaded = its natural size)
    "<script>addEventListener('load',()=>{for(const i of document.querySelectorAll('img.chart'))"
    "if(i.complete&&i.naturalWidth>0)i.dataset.loaded=i.naturalWidth+'x'+i.naturalHeight})</script>"
)


def render(
    summary: dict[str, Any],
    title: str = "Slipstream: models in production",
    *,
    data: DashboardData | None = None,
    refresh_s: float | None = None,
    status: str | None = None,
) -> str:
    """The whole page as HTML text. Without ``data``: the performance plots and tables (raises
    :class:`ReportError` when there is no day row). With ``data`` (the dashboard): also the model versions and
    roles, the drift heat map and the timeline, each section saying "no data yet" while its topic is empty.
    ``refresh_s``: the browser reloads the page that often; ``status``: a line under the title."""
    rows = summary["performance"]
    has_days = any(r["period"] == "day" for r in rows)
    refresh = f"<meta http-equiv=refresh content={max(1, round(refresh_s))}>" if refresh_s else ""
    parts = [
        f"<!doctype html><html><head><meta charset=utf-8>{refresh}<title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
    ]
    if status:
        parts.append(f"<p id=status>{html.escape(status)}</p>")
    if data is not None:
        parts.append(f"<h2>Model versions and roles</h2>{_versions(data, summary)}")
    parts.append(
        "<h2>Realised and estimated performance</h2>"
        "<p>Realised figures use the predictions whose labels arrived (outcomes LABELLED). <span class=est>Estimated"
        "</span> figures are label-free (CBPE: calibrated scores read as expected labels) for the predictions still "
        "awaiting labels; trust them only where <i>estimate trusted</i> says yes. A period is <i>mature</i> when no "
        f"prediction in it awaits its label. Newest event day: {_cell(summary.get('newest_event_day'))}; "
        f"labels without prediction: {_cell(summary.get('labels_without_prediction'))}; join lag (event time): "
        f"{_cell(summary.get('join_lag_s'))} s; duplicates ignored: {_cell(sum(summary['duplicates'].values()))}."
        "</p>"
    )
    alt = {"performance": "realised and estimated AP", "flip_rate": "flip rate", "coverage": "label coverage"}
    if has_days or data is None:
        images = plots(summary)
        parts += [_img(name, images[name], alt[name]) for name in PLOTS]
    else:
        parts += [_empty(name, alt[name].capitalize() + " (predictions, outcomes)") for name in PLOTS]
    if data is not None:
        parts.append(f"<h2>Drift per feature and window</h2>{_drift(data)}")
        parts.append(f"<h2>Alarms and decisions</h2>{_timeline(data)}")
    for heading, period in (("All event time", "all"), ("Per week", "week"), ("Per day", "day")):
        chosen = [r for r in rows if r["period"] == period]
        if chosen:
            parts.append(f"<h2>{heading}</h2>{_table(chosen, COLUMNS)}")
    ranks = [r for r in summary.get("rankings", []) if r["period"] in ("all", "day")]
    if ranks:
        parts.append(f"<h2>Rank agreement of challenger rankers</h2>{_table(ranks, RANK_COLUMNS)}")
    parts.append(f"{_LOADED}</body></html>")
    return "\n".join(parts)


def write_report(summary: dict[str, Any], path: Path, *, data: DashboardData | None = None) -> Path:
    """Write :func:`render` (with ``data``: the dashboard's page) to ``path`` (its folder must exist)."""
    if not path.parent.is_dir():
        msg = f"--out {str(path)!r}: folder {str(path.parent)!r} does not exist"
        raise ReportError(msg)
    path.write_text(render(summary, data=data), encoding="utf-8")
    return path


__all__ = ["PLOTS", "plots", "render", "write_report"]
