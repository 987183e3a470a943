"""`slipstream shadow --workers 2 --metrics-port P`, as users run it: once both worker processes hold a share of the
predictions' partitions, every partition once (as the parent's /metrics shows), predictions arrive; each worker's
counts (sent every 2 s) are served beside each other, they add up to every prediction compared once, and the group's
lag returns to 0."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from slipstream.schemas.contracts import Contracts
from slipstream.schemas.transport import EventProducer, TopicAdmin
from tests.conftest import Services
from tests.integration.monitoring.shadow_fixtures import CHAMPION_FEATURES, prediction, register, registry_at
from tests.integration.serving.http_server import free_port

pytestmark = pytest.mark.integration
N = 600


def _scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return out


def _until(proc: subprocess.Popen[bytes], tmp_path: Path, check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 150
    while True:
        assert proc.poll() is None, (tmp_path / "shadow.log").read_text()[-3000:]
        assert time.monotonic() < deadline, f"no {what} within 150 s"
        time.sleep(1)
        try:
            if check():
                return
        except OSError:  # not serving yet
            continue


def test_two_shadow_workers_report_to_one_metrics_port(
    services: Services, contracts: Contracts, tmp_path: Path
) -> None:
    registry = registry_at(tmp_path)
    champion, challenger = (register(registry, CHAMPION_FEATURES, seed) for seed in (1, 2))
    registry.promote("fraud", champion)
    registry.set_challenger("fraud", challenger, "challenger")
    partitions = TopicAdmin(services.bootstrap_servers).existing()[contracts.topic("predictions")]
    port = free_port()
    env = os.environ | {
        "KAFKA_BOOTSTRAP_SERVERS": services.bootstrap_servers,
        "REDIS_URL": services.redis_url,
        "SLIPSTREAM_STATE_DIR": str(tmp_path),
        "SLIPSTREAM_TOPIC_PREFIX": contracts.catalog.prefix,
        "SLIPSTREAM_METRICS_LAG_INTERVAL_S": "1",
    }
    log = (tmp_path / "shadow.log").open("wb")
    cmd = [sys.executable, "-m", "slipstream", "shadow", "--workers", "2", "--metrics-port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    group = f"{contracts.catalog.prefix}slipstream-shadow"
    workers = {"0.0", "0.1"}
    try:

        def shared() -> bool:
            # Each worker's snapshot is up to 2 s old: right after the second worker joins, the first may still report
            # every partition. The assignment has settled once both hold some and the counts add up to the topic's.
            held = _scrape(port).get("slipstream_processor_partitions", {})
            busy = {dict(k)["worker"] for k, v in held.items() if v > 0}
            return busy == workers and sum(held.values()) == partitions

        _until(proc, tmp_path, shared, f"both workers holding partitions, {partitions} in all")
        with EventProducer(services.bootstrap_servers, contracts) as producer:
            for i in range(N):
                producer.send("predictions", prediction(i, champion))

        def all_compared() -> bool:
            seen = _scrape(port)
            compared = seen.get("slipstream_shadow_compared_total", {})
            lag = seen.get("slipstream_consumer_lag_records", {}).get((("group", group),))
            return sum(compared.values()) == N and lag == 0

        _until(proc, tmp_path, all_compared, f"{N} comparisons and a lag of 0")
        seen = _scrape(port)
        compared = seen["slipstream_shadow_compared_total"]
        assert {dict(k)["worker"]: v > 0 for k, v in compared.items()} == dict.fromkeys(workers, True)  # both did some
        consumed = seen["slipstream_processor_records_consumed_total"]
        assert {dict(k)["worker"] for k in consumed} == workers
        assert sum(consumed.values()) >= N
        assert seen["slipstream_process_up"] == {(("process", "shadow"),): 1.0}
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()
    assert proc.returncode == 0, (tmp_path / "shadow.log").read_text()[-3000:]
