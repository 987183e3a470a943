"""A replay's reports: ``replay.json`` (the summary and every difference), ``predictions.jsonl`` (one row per
prediction: recorded against replayed score, decision, model version and features) and ``replay.html`` (one
self-contained page: the verdict, the counts, the differences, and plots drawn with matplotlib's object API)."""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from slipstream.replay.run import ReplayResult

SHOWN_ROWS = 200


def prediction_rows(result: ReplayResult) -> Iterator[dict[str, Any]]:
    """Per recorded or replayed event: both sides' score, decision, model version and features."""
    recorded = {str(p["event_id"]): p for p in result.recorded}
    replayed = {str(p["event_id"]): p for p in result.replayed}
    for event_id in sorted(recorded.keys() | replayed.keys()):
        a, b = recorded.get(event_id), replayed.get(event_id)
        yield {
            "event_id": event_id,
            "recorded": _side(a),
            "replayed": _side(b),
            "score_diff": None if a is None or b is None else float(b["score"]) - float(a["score"]),
        }


def _side(p: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {
        "model_version": p["model_version"],
        "score": p["score"],
        "decision": p["decision"],
        "features": dict(p.get("features") or {}),
        "feature_event_time": p.get("feature_event_time"),
    }


def write_reports(result: ReplayResult, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / "replay.json",
        "predictions": out_dir / "predictions.jsonl",
        "html": out_dir / "replay.html",
    }
    paths["json"].write_text(json.dumps(result.to_dict(), indent=1, default=str))
    with paths["predictions"].open("w") as sink:
        for row in prediction_rows(result):
            sink.write(json.dumps(row, default=str) + "\n")
    paths["html"].write_text(render(result))
    return paths


def _png(draw: Callable[[Axes], None], title: str, xlabel: str, ylabel: str) -> str:
    figure = Figure(figsize=(6.4, 4.0), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    draw(axes)
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f"<img class=chart alt='{html.escape(title, quote=True)}' src='data:image/png;base64,{encoded}'>"


def _scatter(result: ReplayResult) -> str:
    replayed = {str(p["event_id"]): float(p["score"]) for p in result.replayed}
    pairs = [
        (float(p["score"]), replayed[str(p["event_id"])]) for p in result.recorded if str(p["event_id"]) in replayed
    ]

    def draw(axes: Axes) -> None:
        if pairs:
            axes.scatter([a for a, _ in pairs], [b for _, b in pairs], s=6, alpha=0.5)
        axes.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle="--")

    return _png(draw, "score: recorded vs replayed", "recorded score", "replayed score")


def _deltas(backtest: Mapping[str, Any]) -> str:
    def draw(axes: Axes) -> None:
        axes.hist(backtest["deltas"], bins=50)

    return _png(draw, f"challenger v{backtest['challenger_version']} - champion", "score delta", "predictions")


def _table(rows: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _differences(result: ReplayResult) -> str:
    listed = result.summary.differences[:SHOWN_ROWS]
    if not listed:
        return "<p>No prediction differs.</p>"
    head = (
        "<tr><th>event</th><th>fields</th><th>recorded</th><th>replayed</th><th>features (recorded, replayed)</th></tr>"
    )
    rows = "".join(
        "<tr>"
        f"<td>{html.escape(d.event_id)}</td><td>{html.escape(', '.join(d.fields))}</td>"
        f"<td>v{html.escape(str(d.recorded['model_version']))} {d.recorded['score']:.6g} {d.recorded['decision']}</td>"
        f"<td>v{html.escape(str(d.replayed['model_version']))} {d.replayed['score']:.6g} {d.replayed['decision']}</td>"
        f"<td>{html.escape(', '.join(f'{k}: {a} → {b}' for k, (a, b) in list(d.features.items())[:6]))}</td>"
        "</tr>"
        for d in listed
    )
    more = len(result.summary.differences) - len(listed)
    tail = f"<p>{more:,} more in replay.json.</p>" if more > 0 else ""
    return f"<table>{head}{rows}</table>{tail}"


def _tolerance(result: ReplayResult) -> str:
    t = result.tolerance
    return f"score ±{t.score_abs:g}; features ±{t.feature_abs:g} + {t.feature_rel:g}·|x|"


def render(result: ReplayResult) -> str:
    s = result.summary
    verdict = (
        "reproduced: every recorded prediction again, within the tolerance"
        if result.mode == "reproduce" and result.ok
        else f"{s.failing:,} predictions differ"
        if result.mode == "reproduce"
        else "what-if: another model than the recorded one; differences are expected"
    )
    summary = _table(
        [
            ("slice", result.slice_path),
            ("mode", result.mode),
            ("backend", result.backend),
            ("recorded predictions", f"{s.recorded:,}"),
            ("replayed predictions", f"{s.replayed:,}"),
            ("matched", f"{s.matched:,}"),
            ("missing in replay / extra in replay", f"{len(s.missing):,} / {len(s.extra):,}"),
            (
                "score / decision / model version / features differ",
                f"{s.score} / {s.decision} / {s.model_version} / {s.features}",
            ),
            ("max |score diff|, max |feature diff|", f"{s.max_score_diff:.3g}, {s.max_feature_diff:.3g}"),
            ("timing-only fields (not failing)", s.timing_only or "none"),
            (
                "tolerance",
                _tolerance(result),
            ),
            ("models", ", ".join(f"{k} from the {v}" for k, v in result.models.items())),
            ("counts", ", ".join(f"{k} {v:,}" for k, v in result.counts.items())),
            ("timings", ", ".join(f"{k} {v:,.2f}" for k, v in result.timings.items())),
        ]
    )
    backtest = ""
    if result.backtest is not None:
        b = result.backtest
        backtest = (
            "<h2>Backtest</h2>"
            + _table(
                [
                    ("challenger", b["challenger_version"]),
                    ("champion version(s)", ", ".join(b["champion_versions"])),
                    ("scored", f"{b['scored']:,}"),
                    ("flips", f"{b['flips']:,} ({b['flip_rate']:.2%})"),
                    ("flagged champion / challenger", f"{b['flagged']['champion']:,} / {b['flagged']['challenger']:,}"),
                    (
                        "|score delta| p50 / p99 / max",
                        " / ".join(f"{b['score_delta'][k]:.4g}" for k in ("abs_p50", "abs_p99", "abs_max")),
                    ),
                    ("labelled in the slice (positives)", f"{b['labelled']:,} ({b['positives']:,})"),
                    ("champion AUC / AP", f"{b['champion']['auc']} / {b['champion']['average_precision']}"),
                    ("challenger AUC / AP", f"{b['challenger']['auc']} / {b['challenger']['average_precision']}"),
                ]
            )
            + _deltas(b)
        )
    if result.offline is not None:
        rec, rep = result.offline["recorded"], result.offline["replayed"]
        backtest += "<h2>Against the offline engine</h2>" + _table(
            [
                ("recorded predictions whose features differ from it", f"{rec['differ']:,} of {rec['checked']:,}"),
                ("replayed predictions whose features differ from it", f"{rep['differ']:,} of {rep['checked']:,}"),
                ("recorded: by feature", rec["by_feature"] or "none"),
                ("replayed: by feature", rep["by_feature"] or "none"),
            ]
        )
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>Slipstream replay</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;font-size:14px}.chart{max-width:100%}"
        ".ok{color:#070}.bad{color:#b00}</style></head><body>"
        f"<h1>Replay of {html.escape(result.slice_path.name)}</h1>"
        f"<p class={'ok' if result.ok else 'bad'} id=verdict><b>{html.escape(verdict)}</b></p>"
        f"{summary}<h2>Scores</h2>{_scatter(result)}<h2>Differences</h2>{_differences(result)}{backtest}"
        "</body></html>"
    )
