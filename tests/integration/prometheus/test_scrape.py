"""A real Prometheus, on the shipped config and rules, scrapes the real processes.

On the test services (Kafka, Redis) and a small fraud world (35 days of history in the online store, a champion in
MLflow), every long-running command runs as users run it, serving ``/metrics`` on a free loopback port: ``slipstream
serve``, ``score-stream`` (scoring the history from the beginning), ``monitor --follow``, ``features run``,
``shadow``, ``outcomes``, ``drift`` and ``loop --dry-run``; then a day of live traffic is published and each stream
process's counters and consumer-group lag follow it. Prometheus runs with
``deploy/prometheus/prometheus.yml`` and ``alerts.yml`` as shipped, but for 1 s intervals and target files naming those
ports. Through its HTTP API: every target is up, each process's figures arrived as the processes counted them, every
metric an alert reads exists, every rule evaluates without error, and a stopped process raises its alert.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest

from slipstream.demo.processes import Child
from slipstream.infra.ports import free_ports
from slipstream.infra.prometheus import PrometheusServer, PrometheusTools
from slipstream.schemas.contracts import Contracts
from tests.conftest import Services
from tests.integration.serving.fixtures import FraudWorld, build_world, cli_env, publish
from tests.integration.serving.http_server import Client
from tests.integration.serving.test_fraud_scoring import _body
from tests.unit.deploy.test_prometheus_rules import DEPLOY, METRIC, alert_rules

pytestmark = pytest.mark.integration
HTTP_REQUESTS = 25
# every job of the shipped prometheus.yml: the long-running commands
JOBS = ("serve", "score-stream", "monitor", "features", "shadow", "outcomes", "drift", "loop")
T = TypeVar("T")


def _config(out: Path, targets: dict[str, list[str]]) -> Path:
    """The shipped config and rules, copied as they are but for 1 s intervals (a scrape and an evaluation within the
    test), and a target file per job naming the processes' ports."""
    text = (DEPLOY / "prometheus.yml").read_text()
    for key, shipped in (("scrape_interval", "15s"), ("scrape_timeout", "10s"), ("evaluation_interval", "15s")):
        line = f"  {key}: {shipped}\n"
        assert text.count(line) == 1, f"prometheus.yml has no single {line.strip()!r}"
        text = text.replace(line, f"  {key}: 1s\n")
    (out / "targets").mkdir(parents=True)
    (out / "prometheus.yml").write_text(text)
    shutil.copy(DEPLOY / "alerts.yml", out / "alerts.yml")
    assert set(targets) == {p.name for p in (DEPLOY / "targets").glob("*.yml")}  # one file per job, as shipped
    for name, addresses in targets.items():
        (out / "targets" / name).write_text(json.dumps([{"targets": addresses}]))
    return out / "prometheus.yml"


def _until(what: str, check: Callable[[], T | None], children: dict[str, Child], timeout: float = 45.0) -> T:
    """``check()``'s first truthy answer, polled; fails naming ``what`` (or a process that died, with its log)."""
    deadline = time.monotonic() + timeout
    while True:
        for child in children.values():
            assert child.alive, f"{child.name} exited ({child.proc.returncode}):\n{child.tail(30)}"
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"no {what} within {timeout:g} s"
        time.sleep(0.25)


def _value(server: PrometheusServer, expr: str) -> dict[str, float]:
    """An instant query's values by job."""
    return {row["metric"].get("job", ""): float(row["value"][1]) for row in server.query(expr)}


def _reaching(server: PrometheusServer, expr: str, job: str, at_least: float) -> Callable[[], dict[str, float] | None]:
    """A check for :func:`_until`: ``expr``'s values by job once ``job``'s is ``at_least``."""

    def check() -> dict[str, float] | None:
        values = _value(server, expr)
        return values if values.get(job, 0.0) >= at_least else None

    return check


@pytest.fixture
def world(services: Services, contracts: Contracts, tmp_path: Path) -> FraudWorld:
    return build_world(services, contracts, tmp_path)


@pytest.fixture
def processes(world: FraudWorld, tmp_path: Path) -> Iterator[tuple[dict[str, Child], dict[str, int]]]:
    env = {**os.environ, **cli_env(world.services, world.app, world.project), "SLIPSTREAM_METRICS_LAG_INTERVAL_S": "1"}
    ports = dict(zip(JOBS, free_ports(len(JOBS)), strict=True))
    commands = {
        "serve": ["serve", "--port", str(ports["serve"]), "--log-level", "warning"],
        "score-stream": ["score-stream", "--metrics-port", str(ports["score-stream"]), "--from-beginning", "--quiet"],
        "outcomes": ["outcomes"],
        "monitor": ["monitor", "--follow", "--json", "--refresh", "1"],
        "features": ["features", "run", "--quiet"],
        "shadow": ["shadow"],
        "drift": ["drift"],
        "loop": ["loop", "--dry-run", "--log-level", "warning"],
    }
    for job in JOBS:
        if job not in ("serve", "score-stream"):
            commands[job] += ["--metrics-port", str(ports[job])]
    children = {
        name: Child.start(name, args, env, tmp_path / "logs" / f"{name}.log") for name, args in commands.items()
    }
    try:
        yield children, ports
    finally:
        for child in children.values():
            child.stop()


def test_prometheus_scrapes_every_process_and_evaluates_every_rule(
    prometheus_tools: PrometheusTools,
    world: FraudWorld,
    processes: tuple[dict[str, Child], dict[str, int]],
    tmp_path: Path,
) -> None:
    children, ports = processes
    config = _config(
        tmp_path / "prometheus",
        {f"{job}.yml": [f"127.0.0.1:{port}"] for job, port in ports.items()},
    )
    with PrometheusServer.start(prometheus_tools, config, tmp_path / "prometheus-data") as server:

        def targets_up() -> list[dict[str, Any]] | None:
            active: list[dict[str, Any]] = server.api("targets")["activeTargets"]
            return active if len(active) == len(JOBS) and all(t["health"] == "up" for t in active) else None

        active = _until("scrape of every target", targets_up, children, timeout=180)
        assert {t["labels"]["job"]: t["labels"]["instance"] for t in active} == {
            f"slipstream-{job}": f"127.0.0.1:{port}" for job, port in ports.items()
        }

        client = Client(ports["serve"])
        try:
            for record in world.live_tx[:HTTP_REQUESTS]:
                status, body = client.request("POST", "/v1/fraud/score", _body(record))
                assert status == 200, body
        finally:
            client.close()

        champion = world.versions[0]
        history = len(world.history_tx)
        http_ok = 'slipstream_requests_total{path="http", endpoint="fraud", outcome="ok"}'
        # A scrape taken while the requests were being served counts only some: wait for one after the last, then
        # the count is exact (never more than were sent).
        served = _until("the HTTP scores", _reaching(server, http_ok, "slipstream-serve", HTTP_REQUESTS), children)
        assert served == {"slipstream-serve": HTTP_REQUESTS}
        stream_ok = 'slipstream_requests_total{path="stream", endpoint="fraud", outcome="ok"}'
        scorer = _reaching(server, stream_ok, "slipstream-score-stream", history)
        scored = _until("score-stream's scores of the history", scorer, children)
        seen = f'slipstream_monitor_predictions_total{{role="CHAMPION", version="{champion}"}}'
        monitored = _until("the monitor's count", _reaching(server, seen, "slipstream-monitor", history), children)
        assert monitored == {"slipstream-monitor": history}  # every transaction's prediction, counted once by id

        assert _value(server, f'slipstream_model_info{{endpoint="fraud", version="{champion}"}} == 1') == {
            "slipstream-serve": 1.0,
            "slipstream-score-stream": 1.0,
        }
        ages = _value(server, "sum by (job) (slipstream_feature_age_seconds_count)")  # per view known to the store
        assert 0 < ages["slipstream-serve"] <= 2 * HTTP_REQUESTS
        assert 0 < ages["slipstream-score-stream"] <= 2 * scored["slipstream-score-stream"]
        p99 = _value(
            server, 'histogram_quantile(0.99, sum by (job, le) (slipstream_score_seconds_bucket{stage="total"}))'
        )
        assert set(p99) == {"slipstream-serve", "slipstream-score-stream"}
        assert all(0 < v < 2.5 for v in p99.values()), p99

        needed = {name for rule in alert_rules() for name in METRIC.findall(rule["expr"])}
        assert {"up", "slipstream_monitor_join_lag_seconds", "slipstream_model_swaps_created"} <= needed

        def served() -> bool:
            return needed <= set(server.api("label/__name__/values"))

        assert _until("every metric the alerts read", served, children)
        labelled = 'slipstream_monitor_labelled_total{role="CHAMPION"} > 0'  # `outcomes`' work reached the monitor
        assert set(_until("labelled predictions", lambda: _value(server, labelled), children)) == {"slipstream-monitor"}

        rules = [rule for group in server.api("rules")["groups"] for rule in group["rules"]]
        assert sorted(r["name"] for r in rules) == sorted(rule["alert"] for rule in alert_rules())
        assert [r["name"] for r in rules if r["health"] != "ok" or r.get("lastError")] == []
        assert [r["name"] for r in rules if r["lastEvaluation"].startswith("0001-")] == []  # all evaluated
        assert not [r["name"] for r in rules if r["state"] == "firing"], "nothing is wrong with this world"

        up = _value(server, "slipstream_process_up")
        assert up == {f"slipstream-{job}": 1.0 for job in JOBS if job not in ("serve", "score-stream", "monitor")}
        _stream_processes_count_their_work(server, world, children)

        children["score-stream"].stop()

        def target_down() -> list[dict[str, Any]] | None:
            alerts = [a for a in server.api("alerts")["alerts"] if a["labels"]["alertname"] == "SlipstreamTargetDown"]
            return alerts or None

        down = _until("SlipstreamTargetDown", target_down, {k: v for k, v in children.items() if k != "score-stream"})
        assert [(a["labels"]["job"], a["state"]) for a in down] == [("slipstream-score-stream", "pending")]


def _stream_processes_count_their_work(server: PrometheusServer, world: FraudWorld, children: dict[str, Child]) -> None:
    """The day of live traffic reaches every stream process: the engine counts it per stage, each consumer group's
    lag is served and returns to 0, the label join, shadow, drift and the loop count what they read."""
    publish(world.services, world.contracts, "transactions", world.live_tx)
    consumed = 'sum by (job) (slipstream_engine_records_consumed_total{stage="customer"})'
    _until(
        "the engine's count of the live day",
        _reaching(server, consumed, "slipstream-features", len(world.live_tx)),
        children,
        timeout=90,
    )
    groups = {row["metric"]["group"]: row["metric"]["job"] for row in server.query("slipstream_consumer_lag_records")}
    prefix = world.contracts.catalog.prefix
    assert groups == {
        f"{prefix}slipstream-engine-fraud-customer": "slipstream-features",
        f"{prefix}slipstream-engine-fraud-terminal": "slipstream-features",
        f"{prefix}slipstream-shadow": "slipstream-shadow",
        f"{prefix}slipstream-outcomes": "slipstream-outcomes",
        f"{prefix}slipstream-drift": "slipstream-drift",
        f"{prefix}slipstream-loop": "slipstream-loop",
    }, groups
    caught_up = 'max by (job) (slipstream_consumer_lag_records{job="slipstream-features"}) == 0'
    assert _until("the engine's lag back to 0", lambda: _value(server, caught_up), children, timeout=90)
    for job in ("shadow", "outcomes", "drift"):
        read = f'slipstream_processor_records_consumed_total{{job="slipstream-{job}"}} > 0'
        assert _until(f"{job}'s count of records read", partial(_value, server, read), children)
    assert _until("the loop's count", lambda: _value(server, "slipstream_loop_records_total > 0"), children)
    assert _value(server, "slipstream_drift_alarms_total") == {"slipstream-drift": 0.0}
