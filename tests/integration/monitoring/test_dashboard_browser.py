"""`slipstream ui` on real topics, looked at by a real browser: five days of predictions, comparisons and outcomes,
drift windows, drift alarms and the loop's decisions are produced; the dashboard runs as its own process on a free
loopback port; headless Chromium takes a screenshot (a real PNG that is not blank) and dumps the DOM after the page's
load event: every chart's ``<img>`` is there and was decoded by the browser (``data-loaded`` = its natural size).
The screenshot is kept at /tmp/slipstream-dashboard-sample.png for a person to look at. Read once to the ends (as
`slipstream report` reads), the same records give the same counts and a static page with the same charts."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from matplotlib import image

from slipstream.monitoring.dashboard import CHARTS
from slipstream.monitoring.dashboard_feed import read_dashboard
from slipstream.monitoring.report import write_report
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.transport import EventProducer
from tests.conftest import Services
from tests.integration.monitoring.test_monitor_kafka import _free_port, produce_stream
from tests.samples import sample
from tests.unit.monitoring.synthetic import START, generate

CHROMIUM = Path("/usr/bin/chromium")
SAMPLE = Path("/tmp/slipstream-dashboard-sample.png")  # noqa: S108 - a fixed place the lead looks at
WINDOWS, ALARMED = 20, (7, 8, 15)


def _drift_and_decisions() -> dict[str, list[dict[str, Any]]]:
    windows = []
    for i in range(WINDOWS):
        w = sample("drift_window", i) | {"window_id": f"fraud@3:{i}", "model_version": "3"}
        w |= {"window_start": START + timedelta(hours=6 * i), "window_end": START + timedelta(hours=6 * (i + 1))}
        drifted = i in ALARMED
        w["subjects"] = [
            s | {"p_value": 1e-6 if drifted and s["subject"] != "score" else 0.3, "moved": drifted}
            for s in w["subjects"]
        ]
        windows.append(w | {"alarmed": drifted})
    alarms = [
        sample("drift_alarm", i)
        | {"alarm_id": f"fraud@3:FEATURE_DRIFT:TX_AMOUNT:{i}", "model_version": "3"}
        | {"window_end": windows[i]["window_end"], "window_start": windows[i]["window_start"]}
        for i in ALARMED
    ]
    decisions = [
        ("CHALLENGER_SET", "4", "challenger", "manual challenger", 0.5),
        ("RETRAIN_STARTED", "3", "", "feature drift on TX_AMOUNT", 2.1),
        ("RETRAINED", "5", "", "trained on the recent 14 days", 2.2),
        ("PROMOTION_HELD", "5", "challenger", "only 120 labels of 500", 3.0),
        ("CHALLENGER_REJECTED", "4", "challenger", "AP below the champion's", 4.0),
    ]
    events = [
        sample("model_event", i)
        | {"event_id": f"loop-{i}", "action": action, "version": version, "alias": alias, "reason": reason}
        | {"previous_version": None, "stream_time": START + timedelta(days=day), "event_time": START}
        for i, (action, version, alias, reason, day) in enumerate(decisions)
    ]
    return {"drift-windows": windows, "drift": alarms, "model-events": events}


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - a loopback http URL of the test
        body: bytes = response.read()
        return body


@pytest.fixture
def dashboard(services: Services, contracts: Contracts, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = _free_port()
    env = os.environ | {
        "KAFKA_BOOTSTRAP_SERVERS": services.bootstrap_servers,
        "REDIS_URL": services.redis_url,
        "SLIPSTREAM_TOPIC_PREFIX": contracts.catalog.prefix,
    }
    log = (tmp_path / "ui.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "slipstream", "ui", "--host", "127.0.0.1", "--port", str(port), "--refresh-s", "5"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def _wait_until_read(base: str, proc: subprocess.Popen[str], want: dict[str, int]) -> dict[str, Any]:
    """The reader's state from /healthz (a real request) until the page drawn has every record produced."""
    deadline = time.monotonic() + 120
    health: dict[str, Any] = {}
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"slipstream ui exited with {proc.returncode}"
        try:
            health = orjson.loads(_get(f"{base}/healthz"))
        except OSError:  # not listening yet
            health = {}
        records = health.get("records", {})
        if health.get("caught_up") and all(records.get(k) == n for k, n in want.items()):
            return health
        time.sleep(0.2)
    pytest.fail(f"the dashboard never read everything: want {want}, last /healthz {health}")


def _chromium(*args: str, user_data: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM.exists(), "Chromium is missing: apt-get install chromium (infra/bootstrap.sh does it)"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
    flags += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    result = subprocess.run(
        [str(CHROMIUM), *flags, f"--user-data-dir={user_data}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def test_the_dashboard_in_a_real_browser(
    services: Services, contracts: Contracts, dashboard: tuple[str, subprocess.Popen[str]], tmp_path: Path
) -> None:
    stream = generate(n=600, days=5, rankings=20)
    produce_stream(services, contracts, stream)
    extra = _drift_and_decisions()
    producer = EventProducer(services.bootstrap_servers, contracts, linger_ms=5)
    for topic, records in extra.items():
        for record in records:
            producer.send(topic, record)
    producer.flush()
    base, proc = dashboard
    want = {"predictions": len(stream.predictions), "outcomes": len(stream.outcomes)}
    want |= {"drift_windows": WINDOWS, "alarms": len(ALARMED), "model_events": len(extra["model-events"])}
    health = _wait_until_read(base, proc, want)
    assert health["status"] == "ok" and health["error"] is None and health["page"]

    started = time.monotonic()
    page = _get(base + "/").decode()
    assert time.monotonic() - started < 1.0  # the page drawn last, not a read of the topics
    assert "only 120 labels of 500" in page

    shot = tmp_path / "shot.png"
    _chromium(f"--screenshot={shot}", "--window-size=1400,3000", base + "/", user_data=tmp_path / "profile-1")
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = image.imread(io.BytesIO(png), format="png")
    assert pixels.shape[:2] == (3000, 1400)
    rgb = pixels[..., :3]
    assert 0.05 < float(np.mean(rgb.min(axis=2) < 0.9)) < 0.9  # text, tables and charts on a white page
    assert float(np.mean(rgb.max(axis=2) - rgb.min(axis=2) > 0.3)) > 0.005  # the charts' colours
    SAMPLE.write_bytes(png)

    dom = _chromium("--dump-dom", "--virtual-time-budget=3000", base + "/", user_data=tmp_path / "profile-2").stdout
    tags = {m.group(1): m.group(0) for m in re.finditer(r'<img id="(\w+)"[^>]*>', dom)}
    assert sorted(tags) == sorted(CHARTS), sorted(tags)
    for name, tag in tags.items():
        assert re.search(r'alt="[^"]+"', tag), name
        loaded = re.search(r'data-loaded="(\d+)x(\d+)"', tag)
        assert loaded is not None, f"{name} was not decoded by the browser: {tag[:200]}"
        assert int(loaded.group(1)) >= 800 and int(loaded.group(2)) >= 200, (name, loaded.group(0))
    assert "no data yet" not in dom
    assert "AP below the champion's" in dom.replace("&#39;", "'") and "moved: TX_AMOUNT" in dom
    assert re.search(r"Read from Kafka at [0-9-]+ [0-9:]+ UTC", dom)

    data = read_dashboard(services.bootstrap_servers, contracts)  # `slipstream report`'s reading: the same page
    assert data.records == health["records"]
    static = write_report(data.book.summary(), tmp_path / "report.html", data=data).read_text(encoding="utf-8")
    assert sorted(re.findall(r"<img id=(\w+) class=chart", static)) == sorted(CHARTS)
