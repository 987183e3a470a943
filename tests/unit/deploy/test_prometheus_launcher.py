"""``slipstream.infra.prometheus``: the install guard, and a real ``prometheus`` started, queried and stopped."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from slipstream.infra import prometheus
from slipstream.infra.exceptions import DependencyMissingError, InfraConfigError, InfraError, ServiceDiedError
from slipstream.infra.ports import port_accepts
from slipstream.infra.prometheus import PrometheusServer, PrometheusTools, services_held

MINIMAL = "global:\n  scrape_interval: 1s\nscrape_configs: []\n"


def test_services_held_denies_starts_while_installing_and_cleans_up(tmp_path: Path) -> None:
    policy = tmp_path / "sbin" / "policy-rc.d"
    with services_held(policy):
        assert policy.read_text().rstrip().endswith("exit 101")  # invoke-rc.d: "action forbidden by policy"
        assert policy.stat().st_mode & stat.S_IXUSR
    assert not policy.exists()
    with pytest.raises(RuntimeError), services_held(policy):
        raise RuntimeError  # an install that fails leaves no policy behind either
    assert not policy.exists()


def test_services_held_keeps_the_systems_own_policy(tmp_path: Path) -> None:
    policy = tmp_path / "policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 0\n")
    with services_held(policy):
        assert policy.read_text() == "#!/bin/sh\nexit 0\n"
    assert policy.read_text() == "#!/bin/sh\nexit 0\n"


def test_missing_tools_without_install_name_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prometheus, "find_tools", lambda: None)
    with pytest.raises(DependencyMissingError, match="apt-get install prometheus"):
        prometheus.ensure_tools(install=False)


def test_a_config_that_is_not_a_file_is_refused_before_starting(
    prometheus_tools: PrometheusTools, tmp_path: Path
) -> None:
    with pytest.raises(InfraConfigError, match="nope.yml' is not a file"):
        PrometheusServer.start(prometheus_tools, tmp_path / "nope.yml", tmp_path / "data")


def test_a_bad_config_fails_with_prometheus_own_words(prometheus_tools: PrometheusTools, tmp_path: Path) -> None:
    config = tmp_path / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: often\n")
    said = r"(?s)exited with 2 while starting.*not a valid duration string: .*often"
    with pytest.raises(ServiceDiedError, match=said):
        PrometheusServer.start(prometheus_tools, config, tmp_path / "data")


def test_a_server_starts_on_a_free_loopback_port_answers_and_stops(
    prometheus_tools: PrometheusTools, tmp_path: Path
) -> None:
    config = tmp_path / "prometheus.yml"
    config.write_text(MINIMAL)
    with (
        PrometheusServer.start(prometheus_tools, config, tmp_path / "a") as one,
        PrometheusServer.start(prometheus_tools, config, tmp_path / "b") as two,
    ):
        assert one.port != two.port
        assert one.api("status/buildinfo")["version"].startswith("2.")
        assert one.query("vector(42)")[0]["value"][1] == "42"
        with pytest.raises(InfraError, match="bad_data"):
            one.query("rate(")
        with pytest.raises(InfraError, match="gave a scalar, not a vector"):
            one.query("42")
    assert one.proc.returncode == 0 and two.proc.returncode == 0  # SIGTERM: a clean shutdown
    assert not port_accepts("127.0.0.1", one.port)
