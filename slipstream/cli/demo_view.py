"""What `slipstream demo` shows while it runs: the live table (throughput, latency, frauds caught, freshness, dead
letters), the model panel (a line per model and path: role, version, served, latency, quality), the latest HTTP
answers of both endpoints, the closed-loop panel (the drift alarms, the loop's decisions, realised AP before and
after the drift and after the promotion), and the same numbers on one status line for a file or a pipe.

The model panel is data: a line is a :class:`~slipstream.demo.stats.ModelRow` (from
:meth:`~slipstream.demo.stats.LiveStats.model_rows`) and a column an entry of :data:`MODEL_COLUMNS`, so a challenger
or a shadow model is one more row, and a measure of theirs one more column."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from slipstream.demo import LiveStats
from slipstream.demo.closedloop import LoopView
from slipstream.demo.stats import ModelRow
from slipstream.demo.timeline import iso


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.1f}"


def _share(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1%}"


def live_view(stats: LiveStats, *, rate: float, stopping: bool = False, final: bool = False) -> Group:
    """The live summary: throughput, latency, what the model catches, which model, how fresh, what was rejected."""
    produced_rate, scored_rate = stats.rates()
    minutes, seconds = divmod(int(stats.elapsed), 60)
    state = "final" if final else "stopping: scoring what is in flight…" if stopping else "Ctrl-C stops"
    table = Table(
        title=f"Slipstream live: card traffic → Kafka → features → fraud scores; recommendations   ({state})",
        min_width=100,
    )
    table.add_column("", style="bold")
    table.add_column("now", justify="right")
    clock = iso(stats.shown_time_us)[:19].replace("T", " ") if stats.shown_time_us else "-"
    if stats.loop.ui_url:
        table.add_row("dashboard (slipstream ui)", stats.loop.ui_url)
    table.add_row("live for", f"{minutes}:{seconds:02d}   event time {clock} UTC (simulated ×{stats.speedup:,.0f})")
    table.add_row(
        "transactions produced",
        f"{stats.produced:,} of {stats.planned:,}  {produced_rate:,.0f}/s (target {rate:g}/s)  "
        f"+ {stats.labels:,} delayed labels{'  [data exhausted]' if stats.exhausted else ''}",
    )
    table.add_row("scored by score-stream", f"{stats.scored:,}  {scored_rate:,.0f}/s")
    table.add_row(
        "latency produce → prediction p50 / p99",
        f"{_ms(stats.percentile('e2e_ms', 50))} / {_ms(stats.percentile('e2e_ms', 99))} ms  "
        f"(scorer batch p50 {_ms(stats.percentile('scorer_ms', 50))} ms)",
    )
    table.add_row(
        "HTTP scorer round trip p50 / p99",
        f"{_ms(stats.percentile('http_ms', 50))} / {_ms(stats.percentile('http_ms', 99))} ms  "
        f"({len(stats.http_ms):,} requests, {stats.http_errors} errors, port {stats.http_port})",
    )
    table.add_row(
        "frauds in the stream / flagged / caught",
        f"{stats.frauds_scored:,} / {stats.flagged:,} / {stats.caught:,}   "
        f"precision {_share(stats.precision)}  recall {_share(stats.recall)}",
    )
    table.add_row("model (from predictions)", stats.model or "-")
    table.add_row(
        "feature freshness p50 / p99",
        f"{_ms(stats.percentile('freshness_ms', 50))} / {_ms(stats.percentile('freshness_ms', 99))} ms "
        "(produce → engine's feature vector)",
    )
    letters = ", ".join(f"{name} {n:,}" for name, n in sorted(stats.dead_letters.items())) or "none"
    table.add_row("dead letters", f"{stats.poisoned:,} poison messages injected → {letters}")
    engine = ", ".join(f"{stage} {s.applied:,}" for stage, s in stats.stages.items())
    table.add_row("engine: events applied per stage", engine or "-")
    panels = [table, models_table(stats)]
    if stats.loop.enabled:
        panels.append(loop_table(stats.loop))
    return Group(*panels, _http_view(stats), _reco_view(stats))


def _when(us: int | None) -> str:
    return iso(us)[:16].replace("T", " ") if us else "-"


def _ap(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"


def loop_table(loop: LoopView, *, decisions: int = 8) -> Table:
    """The closed-loop panel: the drift start, the alarms (first, latest), the loop's decisions (the latest
    ``decisions``) with their event times and reasons, and realised AP per version and period, and of the champion
    and the challenger on the same events."""
    table = Table(title=f"closed loop: slipstream drift → slipstream loop   ({loop.state})", min_width=100)
    table.add_column("", style="bold")
    table.add_column("event time")
    table.add_column("what")
    table.add_row("new fraud pattern", _when(loop.drift_start_us), loop.scenario if loop.drift_start_us else "none")
    if loop.latest_alarm is None:
        table.add_row("drift alarms", "-", "none yet")
    else:
        counts = ", ".join(f"{kind} {n:,}" for kind, n in sorted(loop.alarms.items()))
        for name, alarm in (("first alarm", loop.first_alarm), ("latest alarm", loop.latest_alarm)):
            if alarm is not None:
                what = f"{alarm.kind} {alarm.subject} {alarm.value:.3g} > {alarm.threshold:.3g} (v{alarm.version})"
                table.add_row(name, _when(alarm.window_end_us), what)
        table.add_row("alarms so far", "", counts)
    shown = loop.decisions[-decisions:]
    if not shown:
        table.add_row("loop decisions", "-", "none yet")
    for decision in shown:
        table.add_row(decision.action, _when(decision.stream_us), f"v{decision.version}: {decision.reason}")
    realised = "; ".join(
        f"v{version} {period} {_ap(ap)} ({n:,})" for version, period, ap, n in loop.realised() if period != "all"
    ) or "; ".join(f"v{version} {_ap(ap)} ({n:,})" for version, _, ap, n in loop.realised())
    table.add_row("realised AP (labelled)", "", realised or "no labels yet")
    challenger_ap, champion_ap, events, frauds = loop.paired_ap()
    if events:
        table.add_row(
            "same events",
            "",
            f"challenger {_ap(challenger_ap)} vs champion {_ap(champion_ap)} on {events:,} events ({frauds:,} frauds)",
        )
    return table


def _http_view(stats: LiveStats) -> Text:
    last = stats.http_last
    text = Text("HTTP  POST /v1/fraud/score  ", style="bold")
    if not last:
        return text.append("(the first live transaction is scored shortly)", style="dim")
    flagged = bool(last.get("decision"))
    text.append(f"transaction {last.get('transaction_id')}, customer {last.get('customer_id')}, ")
    text.append(f"amount {last.get('amount', 0.0):,.2f} → score {last.get('score', 0.0):.4f} ")
    text.append("FLAGGED" if flagged else "passed", style="bold red" if flagged else "green")
    text.append(f" (truth: {'fraud' if last.get('is_fraud') else 'genuine'}) by {_model(last)}, ")
    server = (last.get("timings_us") or {}).get("total_us", float("nan")) / 1000
    text.append(f"{last.get('round_trip_ms', 0.0):.1f} ms round trip ({server:.2f} ms scoring)")
    return text


def _model(answer: dict[str, Any]) -> str:
    model = answer.get("model") or {}
    return f"{model.get('name', '?')} v{model.get('version', '?')}"


def status_line(stats: LiveStats, *, stopping: bool = False) -> str:
    """The live table's numbers on one line, for a log or a pipe."""
    produced_rate, scored_rate = stats.rates()
    minutes, seconds = divmod(int(stats.elapsed), 60)
    letters = ", ".join(f"{name} {n:,}" for name, n in sorted(stats.dead_letters.items())) or "none"
    pct, reco = stats.percentile, stats.reco
    parts = [
        f"live {minutes}:{seconds:02d}{' stopping' if stopping else ''}",
        f"produced {stats.produced:,} ({produced_rate:,.0f}/s)",
        f"scored {stats.scored:,} ({scored_rate:,.0f}/s)",
        f"latency p50/p99 {_ms(pct('e2e_ms', 50))}/{_ms(pct('e2e_ms', 99))} ms",
        f"http p50/p99 {_ms(pct('http_ms', 50))}/{_ms(pct('http_ms', 99))} ms",
        f"frauds/flagged/caught {stats.frauds_scored:,}/{stats.flagged:,}/{stats.caught:,}",
        f"precision {_share(stats.precision)} recall {_share(stats.recall)}",
        f"model {stats.model or '-'}",
        f"freshness p50 {_ms(pct('freshness_ms', 50))} ms",
        f"dead letters {letters}",
        f"reco {reco.model or '-'} served {reco.served:,} p50/p99 {_ms(reco.percentile(50))}/"
        f"{_ms(reco.percentile(99))} ms ndcg@10 {_ndcg(reco.mean_ndcg)}",
        *(
            f"fraud challenger v{version} compared {c.compared:,} agrees {_share(c.agreement)}"
            for version, c in sorted(stats.verdicts.challengers.items())
        ),
        *(
            f"reco challenger v{version} compared {r.compared:,} overlap@10 {_ndcg(r.overlap)} "
            f"tau {_ndcg(r.tau)} ndcg@10 {_ndcg(r.ndcg)}"
            for version, r in sorted(stats.verdicts.rankers.items())
        ),
    ]
    if stats.loop.enabled:
        parts.append(_loop_line(stats.loop))
    return " | ".join(parts)


def _loop_line(loop: LoopView) -> str:
    """The closed loop on the status line: its state, the alarms, the last decision, realised AP per version."""
    alarm = loop.latest_alarm
    alarms = f"{sum(loop.alarms.values()):,} alarms" + (
        f" (latest {alarm.kind} {alarm.subject} at {_when(alarm.window_end_us)})" if alarm else ""
    )
    last = loop.decisions[-1] if loop.decisions else None
    decided = f"last {last.action} v{last.version} at {_when(last.stream_us)}" if last else "no decision yet"
    realised = ", ".join(f"v{v} {p} {_ap(ap)}" for v, p, ap, _ in loop.realised())
    return f"loop: {loop.state}; {alarms}; {decided}; realised AP {realised or '-'}"


MODEL_COLUMNS: tuple[tuple[str, str, Callable[[ModelRow], str]], ...] = (
    ("model", "left", lambda r: r.model),
    ("role", "left", lambda r: r.role),
    ("version", "right", lambda r: r.version),
    ("path", "left", lambda r: r.path),
    ("served", "right", lambda r: f"{r.served:,}"),
    ("p50 ms", "right", lambda r: _ms(r.p50_ms)),
    ("p99 ms", "right", lambda r: _ms(r.p99_ms)),
    ("quality so far", "left", lambda r: r.quality or "-"),
)


def models_table(stats: LiveStats) -> Table:
    """The model panel: a row per model and path (:meth:`LiveStats.model_rows`), a column per :data:`MODEL_COLUMNS`
    entry. Latency: produce → prediction read back on the Kafka path, the round trip over HTTP."""
    table = Table(title="models serving", min_width=100)
    for header, justify, _ in MODEL_COLUMNS:
        table.add_column(header, justify="right" if justify == "right" else "left")
    for row in stats.model_rows():
        table.add_row(*(cell(row) for _, _, cell in MODEL_COLUMNS))
    return table


def _reco_view(stats: LiveStats) -> Text:
    reco = stats.reco
    last = reco.last
    text = Text("HTTP  POST /v1/recommendations  ", style="bold")
    if not last:
        state = f"{reco.errors} errors so far" if reco.errors else "the first request goes out shortly"
        return text.append(f"({state})", style="dim")
    items = last.get("items") or []
    top = ", ".join(str(item.get("item_id")) for item in items[:5])
    text.append(f"user {last.get('user_id')} → top {len(items)}: {top}{', …' if len(items) > 5 else ''} ")
    ndcg = last.get("ndcg", float("nan"))
    text.append(f"(NDCG@10 {'-' if math.isnan(ndcg) else f'{ndcg:.3f}'} against the week after) by {_model(last)}, ")
    server = (last.get("timings_us") or {}).get("total_us", float("nan")) / 1000
    text.append(f"{last.get('round_trip_ms', 0.0):.1f} ms round trip ({server:.2f} ms ranking)")
    return text


def _ndcg(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"
