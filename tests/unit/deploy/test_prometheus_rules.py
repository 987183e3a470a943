"""The shipped Prometheus files (``deploy/prometheus``), checked by Prometheus's own ``promtool``.

The config and its rule and target files are valid; every alert is exercised by ``promtool test rules`` both firing and
staying quiet; every alert has a severity, a summary, a description and a ``for:`` (but the one that must fire at
once); and every metric an alert reads is one the processes really serve — the names are taken from the scorer's and
the monitor's own registries, not from a list kept by hand.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.registry import CollectorRegistry

from slipstream.infra.prometheus import PrometheusTools, promtool
from slipstream.monitoring.drift.processor import DriftCounts as DriftHandlerCounts
from slipstream.monitoring.loop.controller import LoopStats
from slipstream.monitoring.metrics import MonitorMetrics
from slipstream.monitoring.performance import PerformanceBook
from slipstream.monitoring.transactional import ProcessorStats
from slipstream.process_metrics import ProcessMetrics
from slipstream.serving.metrics import ScorerMetrics
from slipstream.streams.engine.settings import StageStats

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy" / "prometheus"
UNIT_TESTS = sorted((DEPLOY / "tests").glob("*.yml"))
SEVERITIES = {"critical", "warning"}
# Fires on the evaluation that sees the refusal: a swap refused is an event, not a state that lasts.
# A drift alarm likewise: each is a record on the `drift` topic, and the rule looks back 30 minutes.
NO_FOR = {"SlipstreamModelSwapRefused", "SlipstreamDriftAlarm"}
METRIC = re.compile(r"\b(slipstream_[a-z0-9_]+|up)\b")


def alert_rules() -> list[dict[str, Any]]:
    """Every alerting rule of ``alerts.yml``, as parsed."""
    groups = yaml.safe_load((DEPLOY / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def _output(result: Any) -> str:
    return f"{result.stdout}\n{result.stderr}"


def test_config_rules_and_targets_are_valid(prometheus_tools: PrometheusTools) -> None:
    config = promtool(prometheus_tools, "check", "config", str(DEPLOY / "prometheus.yml"))
    assert config.returncode == 0, _output(config)
    assert "SUCCESS: 1 rule files found" in config.stdout
    rules = promtool(prometheus_tools, "check", "rules", str(DEPLOY / "alerts.yml"))
    assert rules.returncode == 0, _output(rules)
    assert f"SUCCESS: {len(alert_rules())} rules found" in rules.stdout
    jobs = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())["scrape_configs"]
    read = {f for job in jobs for sd in job["file_sd_configs"] for f in sd["files"]}
    shipped = {f"targets/{p.name}" for p in (DEPLOY / "targets").glob("*.yml")}
    assert read == shipped and len(jobs) == 8  # every long-running command (prometheus.yml's header lists them)
    for targets in sorted((DEPLOY / "targets").glob("*.yml")):  # what file-based discovery will read
        groups = yaml.safe_load(targets.read_text())
        assert groups and all(re.fullmatch(r"127\.0\.0\.1:\d+", t) for g in groups for t in g["targets"]), targets


def test_promtool_unit_tests_pass(prometheus_tools: PrometheusTools) -> None:
    assert len(UNIT_TESTS) >= 5
    result = promtool(prometheus_tools, "test", "rules", *map(str, UNIT_TESTS))
    assert result.returncode == 0, _output(result)
    assert _output(result).count("SUCCESS") == len(UNIT_TESTS)


def test_promtool_fails_a_test_whose_alert_does_not_fire(prometheus_tools: PrometheusTools, tmp_path: Path) -> None:
    """The tests can fail: the same firing case against a rule whose threshold was raised is reported."""
    rules = (DEPLOY / "alerts.yml").read_text()
    raised = rules.replace("slipstream_monitor_join_lag_seconds > 86400", "slipstream_monitor_join_lag_seconds > 1e9")
    assert raised != rules
    (tmp_path / "alerts.yml").write_text(raised)
    (tmp_path / "tests").mkdir()
    copy = tmp_path / "tests" / "lag_test.yml"
    copy.write_text((DEPLOY / "tests" / "lag_test.yml").read_text())
    result = promtool(prometheus_tools, "test", "rules", str(copy))
    assert result.returncode != 0
    assert "alertname: SlipstreamLabelJoinBehind" in _output(result)


def test_every_alert_is_tested_firing_and_quiet() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in UNIT_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - firing == set(), "alerts never tested firing"
    assert names - quiet == set(), "alerts never tested staying quiet"
    assert (firing | quiet) - names == set(), "tests of alerts that do not exist"


def test_every_alert_has_a_severity_a_summary_a_description_and_a_for() -> None:
    alerts = alert_rules()
    assert len({rule["alert"] for rule in alerts}) == len(alerts), "alert names are unique"
    for rule in alerts:
        name = rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert rule["annotations"]["summary"].strip(), name
        assert len(rule["annotations"]["description"]) > 100, name
        assert ("for" in rule) == (name not in NO_FOR), name


def _served_names(registry: CollectorRegistry) -> set[str]:
    """Every sample name the registry's families can serve (a family without samples yet still names them)."""
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created")}
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names


def test_alerts_read_only_metrics_the_processes_serve() -> None:
    scorer = ScorerMetrics()
    monitor = MonitorMetrics()
    summary = PerformanceBook().summary(("all",))
    summary["join_lag_s"] = 0.0  # served once both a score and a label have been seen
    monitor.observe(summary)
    streams = ProcessMetrics("any")
    streams.engine("fraud", "customer", StageStats())
    streams.snapshot("drift", "0", asdict(ProcessorStats()), asdict(DriftHandlerCounts()))
    streams.loop(LoopStats())
    served = _served_names(scorer.registry) | _served_names(monitor.registry) | _served_names(streams.registry)
    served |= {"up"}
    assert {"slipstream_requests_total", "slipstream_monitor_join_lag_seconds"} <= served  # the reading is right
    assert {"slipstream_consumer_lag_records", "slipstream_drift_alarms_total"} <= served
    for rule in alert_rules():
        used = set(METRIC.findall(rule["expr"]))
        assert used, rule["alert"]
        assert used <= served, f"{rule['alert']} reads {sorted(used - served)}, which no process serves"
