"""The commands, end to end, on both throwaway platforms: `slipstream record` from a running namespace, `record
inspect`, and `slipstream replay` on testcontainers (the locally built images) and on the local launcher."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
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


def test_replay_command_on_testcontainers(
    recorded_slice: Recorded, services: Services, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    """`slipstream replay` on the locally built images: the same predictions, the reports, and no container left.
    (The local launcher's throwaway is tested in tests/integration/infra; the replays on the suite's own platform,
    which is the local launcher, in test_replay.py.)"""
    assert docker_engine.kafka_image
    env = _env(recorded_slice, services)
    out = tmp_path / "report"
    mine = ["docker", "ps", "-aq", "--filter", f"label=slipstream.throwaway.owner={os.getpid()}"]  # runs in-process
    before = set(subprocess.run(mine, capture_output=True, text=True, check=True).stdout.split())  # a plugin's
    result = CliRunner().invoke(
        cli, ["replay", str(recorded_slice.path), "--backend", "testcontainers", "--out", str(out), "--json"], env=env
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "replay.json").read_text())
    assert report["backend"] == "testcontainers"
    assert report["ok"] is True
    assert report["diff"]["matched"] == recorded_slice.production.scored
    assert report["diff"]["failing"] == 0
    assert report["timings_s"]["platform_start_s"] > 0
    assert (out / "replay.html").read_text().count("reproduced") >= 1
    assert len((out / "predictions.jsonl").read_text().splitlines()) == recorded_slice.production.scored
    after = set(subprocess.run(mine, capture_output=True, text=True, check=True).stdout.split())
    assert after <= before  # this replay's containers are gone


def test_sigterm_mid_replay_removes_the_platform(
    recorded_slice: Recorded, services: Services, docker_engine: DockerEngine, tmp_path: Path
) -> None:
    """Stopped while it replays (SIGTERM, as a supervisor stops it), `slipstream replay` removes its containers and
    exits 130 like Ctrl-C."""
    env = os.environ | _env(recorded_slice, services)
    proc = subprocess.Popen(
        [sys.executable, "-m", "slipstream", "replay", str(recorded_slice.path), "--backend", "testcontainers"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    mine = ["docker", "ps", "-aq", "--filter", f"label=slipstream.throwaway.owner={proc.pid}"]
    try:
        deadline = time.monotonic() + 120
        while len(subprocess.run(mine, capture_output=True, text=True, check=True).stdout.split()) < 2:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the replay never started its containers"
            time.sleep(0.2)
        time.sleep(3.0)  # into the replay: topics, history, the engine's processes
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert subprocess.run(mine, capture_output=True, text=True, check=True).stdout.strip() == ""
