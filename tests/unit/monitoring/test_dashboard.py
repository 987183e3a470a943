"""The dashboard without a broker: decoded records in, one HTML page out, with every chart as an ``<img>`` whose PNG
decodes and shows content; empty topics give a page that says "no data yet" per section. Roles replayed from
model-events in event-time order, heat map cells and scale, timeline entries and their reasons."""

from __future__ import annotations

import base64
import io
import math
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import typer
from matplotlib import image
from typer.testing import CliRunner

from slipstream.cli.ui import ui
from slipstream.monitoring.dashboard import CHARTS, render
from slipstream.monitoring.dashboard_data import DashboardData, evidence_text
from slipstream.monitoring.report import PLOTS, write_report
from tests.samples import T0, sample
from tests.unit.monitoring.synthetic import generate

IMG = re.compile(r"<img id=(\w+) class=chart alt='([^']+)' src='data:image/png;base64,([A-Za-z0-9+/=]+)'>")


def _event(i: int, action: str, version: str, **fields: Any) -> dict[str, Any]:
    base = sample("model_event", i) | {"action": action, "version": version, "alias": "", "previous_version": None}
    return base | {"event_time": T0 + timedelta(minutes=i), "reason": None, "evidence": None} | fields


def _window(i: int, *, alarmed: bool = False, version: str = "4", p: bool = True) -> dict[str, Any]:
    w = sample("drift_window", i) | {"window_end": T0 + timedelta(hours=6 * i), "alarmed": alarmed}
    w |= {"model_version": version, "window_id": f"fraud@{version}:{i}"}
    if not p:
        w["subjects"] = [s | {"p_value": None} for s in w["subjects"]]
    return w


def full_data() -> DashboardData:
    stream = generate(n=600, days=5, rankings=0)
    data = DashboardData().update_all(stream.predictions + stream.comparisons + stream.outcomes)
    data.update_all(_window(i, alarmed=i % 5 == 2, version="4" if i < 12 else "5") for i in range(20))
    data.update(sample("drift_alarm", 1))
    data.update(_event(1, "CHALLENGER_SET", "5", alias="challenger", stream_time=T0 + timedelta(days=1)))
    data.update(
        _event(2, "PROMOTED", "5", alias="champion", previous_version="4", reason="challenger beat the champion")
        | {"evidence": '{"champion_ap": 0.41, "challenger_ap": 0.52, "labels": 3200}'}
        | {"stream_time": T0 + timedelta(days=3)}
    )
    return data


def _pngs(page: str) -> dict[str, tuple[str, np.ndarray]]:
    return {
        name: (alt, image.imread(io.BytesIO(base64.b64decode(encoded)), format="png"))
        for name, alt, encoded in IMG.findall(page)
    }


def test_the_page_has_every_chart_with_content() -> None:
    page = render(full_data(), refresh_s=10, status="read just now")
    charts = _pngs(page)
    assert sorted(charts) == sorted(CHARTS)
    for name, (alt, pixels) in charts.items():
        assert alt.strip(), name
        rgb = pixels[..., :3]
        assert 0.01 < float(np.mean(rgb.min(axis=2) < 0.9)) < 0.9, name  # drawn, not blank, not a solid block
        assert float(np.mean(rgb.max(axis=2) - rgb.min(axis=2) > 0.3)) > 0.0003, (
            name
        )  # coloured marks (a few markers suffice)
    assert "no data yet" not in page
    assert "<meta http-equiv=refresh content=10>" in page and "<p id=status>read just now</p>" in page
    assert "20 windows, 4 alarmed" in charts["drift_heatmap"][0]
    assert "challenger beat the champion" in page and "challenger_ap=0.52" in page  # the decision's reason
    assert "moved: TX_AMOUNT" in page  # the alarm's evidence
    assert "i.dataset.loaded=" in page  # the marker script the browser test reads back (data-loaded)


def test_empty_topics_give_no_data_yet_per_section() -> None:
    page = render(DashboardData())
    assert "<img" not in page
    for section in ("versions", *CHARTS):
        assert re.search(rf"<p class=empty id={section}-empty>[^<]*no data yet", page), section


def test_a_page_with_performance_only_says_which_sections_wait() -> None:
    stream = generate(n=200, days=3, rankings=0)
    page = render(DashboardData().update_all(stream.predictions + stream.outcomes))
    assert sorted(_pngs(page)) == sorted(PLOTS)
    assert "id=drift_heatmap-empty" in page and "id=timeline-empty" in page
    assert "id=versions-table" in page  # the versions seen scoring, without any model event


def test_roles_are_replayed_in_event_time_order_whatever_the_reading_order() -> None:
    events = [
        _event(1, "PROMOTED", "4", alias="champion", previous_version="3"),
        _event(2, "CHALLENGER_SET", "5", alias="challenger"),
        _event(3, "CHALLENGER_SET", "6", alias="challenger-b"),
        _event(4, "PROMOTED", "5", alias="champion", previous_version="4"),
        _event(5, "CHALLENGER_REJECTED", "6", alias="challenger-b", reason="AP below the champion's"),
        _event(6, "RETRAIN_STARTED", "5"),
        _event(7, "RETRAINED", "7"),
        _event(8, "REFUSED", "8", reason="parity gate failed"),
    ]
    for order in (events, events[::-1]):
        roles = {v.version: (v.role, v.aliases) for v in DashboardData().update_all(order).versions()}
        assert roles == {
            "5": ("champion", ("challenger", "champion")),
            "4": ("retired", ()),
            "6": ("retired", ()),
            "7": ("registered", ()),
            "8": ("refused", ()),
        }
    rejected = next(v for v in DashboardData().update_all(events).versions() if v.version == "6")
    assert rejected.last_action == "CHALLENGER_REJECTED" and rejected.reason == "AP below the champion's"


def test_heat_map_cells_scale_and_duplicates() -> None:
    data = DashboardData().update_all([_window(0), _window(1, alarmed=True), _window(1)])
    extra = _window(2) | {"window_id": "fraud@4:2"}
    extra["subjects"] = [*extra["subjects"], sample("drift_window")["subjects"][0] | {"subject": "TX_NIGHT"}]
    data.update(extra)
    (m,) = data.heatmaps()
    assert data.duplicates["drift_windows"] == 1 and len(m.window_ends) == 3
    assert m.subjects == ("TX_AMOUNT", "TX_NIGHT", "score") and m.scale == "-log10 p"
    assert m.values[0][0] == -math.log10(1e-6) and math.isnan(m.values[1][0]) and m.alarmed == (False, True, False)
    assert m.moved[0] == (True, True, True) and m.moved[2] == (False, False, False)
    (ratio,) = DashboardData().update_all([_window(0, p=False)]).heatmaps()
    assert ratio.scale == "value / threshold" and ratio.values[0][0] == 0.31 / 0.08


def test_timeline_orders_by_event_time_and_lists_hand_made_changes() -> None:
    hand = _event(1, "PROMOTED", "9", alias="champion", stream_time=None, actor="alice")
    data = DashboardData().update_all([hand, sample("drift_alarm", 0), sample("drift_alarm", 0)])
    entries = data.timeline()
    assert [e.kind for e in entries] == ["FEATURE_DRIFT", "PROMOTED"] and data.duplicates["alarms"] == 1
    assert entries[1].time is None and "by alice" in entries[1].detail
    page = render(data)
    assert "id=timeline class=chart" in page and "by alice" in page  # drawn: the alarm; listed: both
    only_hand = render(DashboardData().update(hand))
    assert "id=timeline-empty" in only_hand and "by alice" in only_hand


def test_evidence_text_reads_json_and_keeps_what_is_not() -> None:
    assert evidence_text('{"ap": 0.51234, "gates": {"min_labels": 500}}') == 'ap=0.512, gates={"min_labels":500}'
    assert evidence_text("not json") == "not json"
    assert evidence_text(None) == "" and len(evidence_text('{"k": "' + "x" * 500 + '"}', limit=50)) == 50


def test_the_static_report_includes_drift_and_timeline_when_given_data(tmp_path: Path) -> None:
    data = full_data()
    written = write_report(data.summary(), tmp_path / "r.html", data=data)
    assert sorted(_pngs(written.read_text(encoding="utf-8"))) == sorted(CHARTS)
    plain = write_report(data.summary(), tmp_path / "p.html")
    assert sorted(_pngs(plain.read_text(encoding="utf-8"))) == sorted(PLOTS)


def test_ui_refuses_bad_options_before_touching_kafka() -> None:
    app = typer.Typer()
    app.command()(ui)
    for args, fragment in ((["--port", "0"], "--port"), (["--refresh-s", "0"], "--refresh-s")):
        result = CliRunner().invoke(app, args, env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
        assert result.exit_code == 2 and fragment in result.output, result.output
