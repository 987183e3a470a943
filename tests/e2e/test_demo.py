"""`slipstream demo`, the whole story in a short mode, against the test platform: platform, data, a trained and
promoted champion and reco ranker, a (2-day) warm-up through the engine, score-stream and the HTTP scorer as child
processes (and the closed loop's drift monitor, loop and dashboard), live traffic and recommendation requests for
a few seconds, then a clean stop — nothing of the run left running, its topics and Redis keys gone."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from confluent_kafka.admin import AdminClient

from tests.conftest import REPO, Services

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
LIVE_SECONDS = 15


def _marked(marker: str) -> list[int]:
    """Processes whose environment carries ``marker`` (the demo and every process it started inherit it)."""
    found = []
    needle = f"SLIPSTREAM_E2E_MARKER={marker}".encode()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if needle in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found


def test_demo_end_to_end(services: Services, tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    report_path = tmp_path / "report.json"
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": services.bootstrap_servers,
        "REDIS_URL": services.redis_url,
        "SLIPSTREAM_STATE_DIR": str(tmp_path / "state"),
        "SLIPSTREAM_OFFLINE_DIR": str(tmp_path / "offline"),
        "SLIPSTREAM_FEAST_REPO_DIR": str(tmp_path / "feast"),
        "SLIPSTREAM_TOPIC_PREFIX": "",
        "SLIPSTREAM_E2E_MARKER": marker,
        "COLUMNS": "160",
    }
    data = REPO / ".slipstream" / "data" / "fraud.parquet"  # simulated once, kept for later runs
    if not (data.exists() and data.with_name("fraud.labels.parquet").exists()):
        made = subprocess.run(
            [sys.executable, "-m", "slipstream", "simulate", "fraud", "--out", str(data)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-2000:]
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "slipstream",
            "demo",
            "--duration",
            str(LIVE_SECONDS),
            "--warmup-days",
            "2",
            "--rate",
            "200",
            "--data",
            str(data),
            "--report",
            str(report_path),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    elapsed = time.monotonic() - started
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    report = json.loads(report_path.read_text())

    # the story happened: a champion was registered, and the live traffic was scored with it, on both paths
    version = report["registered_version"]
    assert version, output[-2000:]
    assert report["model"] == f"fraud v{version}"
    assert report["http_model"] == version
    assert report["http_requests"] > 0
    assert report["produced"] >= LIVE_SECONDS * 200 * 0.8
    assert report["scored"] >= report["produced"] * 0.99, report
    assert report["e2e_p50_ms"] > 0
    assert report["frauds_scored"] >= 0 and report["caught"] <= report["flagged"]
    assert report["poisoned"] > 0
    assert report["dead_letters"].get("score-stream", 0) > 0  # poison reached the scorer, and was dead-lettered
    assert report["error"] is None

    # recommendations too: the ranker registered and promoted, loaded by serve (/readyz), serving the requests
    reco = report["reco"]
    assert reco["registered_version"], output[-2000:]
    assert reco["loaded_version"] == reco["registered_version"]  # /readyz: reco loaded, that version
    assert reco["model"] == f"reco v{reco['registered_version']}"  # the answers' model
    assert reco["requests"] >= LIVE_SECONDS * 5, reco  # ~20/s asked
    assert reco["errors"] == 0
    assert reco["p50_ms"] > 0
    assert abs(reco["ndcg_at_10"] - reco["offline_ndcg_at_10"]) < 0.15  # the held-out users, ranked online
    assert "timings_s" in report and "reco" in report["timings_s"]
    assert "models serving" in output and "/v1/recommendations" in output
    assert "start-up to live traffic" in output
    assert "slipstream infra down" not in output  # the services were given: the demo says it leaves them be

    # a challenger beside each champion, shadowed live: fraud on the champion's predictions, reco on its rankings
    challenger = report["challenger_version"]
    assert challenger and challenger != version
    fraud_shadow = report["shadow"]["challengers"][challenger]
    assert fraud_shadow["compared"] > 0, report["shadow"]
    assert 0.0 <= fraud_shadow["agreement"] <= 1.0
    assert fraud_shadow["lag_p50_ms"] > 0
    reco_challenger = reco["challenger_version"]
    assert reco_challenger and reco_challenger != reco["registered_version"]
    assert reco["streamed"] > 0 and reco["stream_errors"] == 0  # the requests also went to Kafka
    ranker = report["shadow"]["rankers"][reco_challenger]
    assert ranker["compared"] > 0, report["shadow"]
    for measure in ("mean_overlap_at_k", "mean_ndcg_at_k"):
        assert 0.0 < ranker[measure] <= 1.0, ranker
    assert -1.0 <= ranker["mean_kendall_tau"] <= 1.0
    assert ranker["lag_from_request_p50_ms"] > 0
    rows = [line for line in output.splitlines() if " challenger " in line and "shadow" in line]
    assert any(line.split("│")[1].strip() == "fraud" for line in rows if "│" in line), rows
    assert any(line.split("│")[1].strip() == "reco" for line in rows if "│" in line), rows
    # the closed loop ran beside them (drift, loop, the dashboard): with --data there is no drift, and 15 s of live
    # traffic (~8 event hours, no label yet) give the loop nothing to decide; a daily drift window may close
    loop = report["loop"]
    assert loop["enabled"] and loop["scenario"] == "none" and loop["drift_start"] is None
    assert loop["decisions"] == [] and loop["state"] in ("watching", "alarmed; waiting for labels"), loop
    assert loop["ui"] and loop["ui"].startswith("http://127.0.0.1:")
    assert any("dashboard (slipstream ui)" in line and loop["ui"] in line for line in output.splitlines())
    assert "closed loop: slipstream drift" in output
    assert re.search(r"loop: (watching|alarmed; waiting for labels); \d+ alarms.*; no decision yet", output)
    cpu = report["cpu_s"]["live"]  # CPU seconds of each process during live traffic, for the record
    assert cpu["shadow"] > 0 and cpu["score-stream-reco"] > 0
    assert cpu["drift"] > 0 and cpu["loop"] > 0

    # a clean stop: every child ended, nothing of this run left running, its namespace deleted
    children = {"score-stream", "score-stream-reco", "serve", "shadow", "outcomes", "drift", "loop", "ui"}
    assert set(report["exit_codes"]) == children | {"engine"}
    assert report["exit_codes"]["score-stream"] == 0
    assert report["exit_codes"]["engine"] == 0
    assert report["left_running"] == []
    deadline = time.monotonic() + 10  # multiprocessing's resource tracker exits just after its parent
    while _marked(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _marked(marker) == []
    assert report["cleaned"]
    topics = AdminClient({"bootstrap.servers": services.bootstrap_servers}).list_topics(timeout=10).topics
    assert not [t for t in topics if t.startswith(report["prefix"])]
    client = redis.Redis.from_url(services.redis_url)
    assert not list(client.scan_iter(match=f"*{report['project']}".encode(), count=1000))
    client.close()
    print(f"demo e2e: {elapsed:.0f} s in all; start-up {report['timings_s']}; CPU s {report['cpu_s']}")
