"""The commands, end to end, on both throwaway platforms: `slipstream record` from a running namespace, `record
inspect`, and `slipstream replay` on testcontainers (the locally built images) and on the local launcher."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slipstream.cli import app as cli
from tests.conftest import DockerEngine, Services
from tests.integration.replay.conftest import Recorded
from tests.integration.serving.fixtures import cli_env

pytestmark = pytest.mark.integration


def _env(recorded: Recorded, services: Services) -> dict[str, str]:
    world = recorded.production.world
    return cli_env(services, world.app, world.project)


def test_record_command_and_inspect(recorded_slice: Recorded, services: Services, tmp_path: Path) -> None:
    production = recorded_slice.production
    env = _env(recorded_slice, services)
    runner = CliRunner()
    out = tmp_path / "again.slice"
    args = ["record", "--from", production.start.isoformat(), "--to", production.end.isoformat(), "--out", str(out)]
    result = runner.invoke(cli, args, env=env)
    assert result.exit_code == 0, result.output
    shown = runner.invoke(cli, ["record", "inspect", str(out), "--verify", "--json"], env=env)
    assert shown.exit_code == 0, shown.output
    summary = json.loads(shown.stdout)
    assert summary["verified"] is True
    assert summary["topics"]["transactions"]["records"] == recorded_slice.manifest["topics"]["transactions"]["records"]
    bad = runner.invoke(cli, ["record", "--from", "yesterday", "--out", str(out)], env=env)
    assert bad.exit_code == 2 and "--from: 'yesterday'" in bad.output
    bad = runner.invoke(cli, ["record", "--from", "-1m", "--topics", "transactionz", "--out", str(out)], env=env)
    assert bad.exit_code == 2 and "'transactionz'" in bad.output


@pytest.mark.parametrize("backend", ["testcontainers", "local"])
def test_replay_command_on_a_throwaway_platform(
    backend: str, recorded_slice: Recorded, services: Services, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "testcontainers":
        engine: DockerEngine = request.getfixturevalue("docker_engine")
        assert engine.kafka_image
    env = _env(recorded_slice, services)
    out = tmp_path / "report"
    result = CliRunner().invoke(
        cli, ["replay", str(recorded_slice.path), "--backend", backend, "--out", str(out), "--json"], env=env
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "replay.json").read_text())
    assert report["backend"] == backend
    assert report["ok"] is True
    assert report["diff"]["matched"] == recorded_slice.production.scored
    assert report["diff"]["failing"] == 0
    assert report["timings_s"]["platform_start_s"] > 0
    assert (out / "replay.html").read_text().count("reproduced") >= 1
    assert len((out / "predictions.jsonl").read_text().splitlines()) == recorded_slice.production.scored
    if backend == "testcontainers":  # removed afterwards
        mine = f"label=slipstream.throwaway.owner={os.getpid()}"  # the command ran in this process
        ps = subprocess.run(["docker", "ps", "-aq", "--filter", mine], capture_output=True, text=True, check=True)
        assert ps.stdout.strip() == ""
