"""The HTTP scorer with bearer tokens, on the real broker, Redis and MLflow, over real HTTP: the app the composition
root builds from the settings (as `serve` and its workers do) refuses what carries no accepted token and scores what
does; `slipstream serve` itself, with its tokens in a file, says it requires one and prints none; and a command that
fails on an unreachable Redis whose URL holds a password does not print the password."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr

from slipstream.app import Slipstream
from tests.integration.serving.fixtures import FraudWorld, cli_env
from tests.integration.serving.http_server import Client, free_port, running
from tests.integration.serving.test_fraud_scoring import _body

pytestmark = pytest.mark.integration
TOKENS = (f"old-{uuid.uuid4().hex}", f"new-{uuid.uuid4().hex}")
REFUSED = {"error": "unauthorized", "detail": "a valid bearer token is required"}


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def _check_guarded(port: int, world: FraudWorld) -> None:
    """401 without or with a wrong token, 200 with each accepted one; the probes and /metrics open."""
    client = Client(port)
    try:
        record = _body(world.live_tx[0])
        for headers in ({}, _bearer(f"wrong-{uuid.uuid4().hex}"), {"authorization": f"Basic {TOKENS[0]}"}):
            status, body = client.request("POST", "/v1/fraud/score", record, headers)
            assert (status, body) == (401, REFUSED)
            assert client.last is not None and client.last.getheader("www-authenticate") == 'Bearer realm="slipstream"'
        for token in TOKENS:
            status, body = client.request("POST", "/v1/fraud/score", record, _bearer(token))
            assert status == 200, body
            assert body["model"]["version"] == world.versions[0]
        for path in ("/healthz", "/readyz", "/metrics"):
            status, _ = client.request("GET", path)
            assert status == 200, path
        _, metrics = client.request("GET", "/metrics")
        assert 'slipstream_requests_total{endpoint="fraud",outcome="unauthorized",path="http"} 3.0' in metrics
    finally:
        client.close()


def test_the_scorer_built_from_settings_requires_a_token(world: FraudWorld) -> None:
    settings = world.app.settings.model_copy(update={"scorer_tokens": tuple(SecretStr(t) for t in TOKENS)})
    app = Slipstream(settings)
    service = app.scoring_service(contracts=world.contracts, reco=False)
    with running(app.http_app(service)) as port:
        _check_guarded(port, world)


def _wait_ready(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            client = Client(port)
            status, _ = client.request("GET", "/readyz")  # open: no token needed to probe
            client.close()
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    pytest.fail(f"`slipstream serve` never became ready: {log.read_text()}")


def test_serve_with_a_token_file_requires_a_token_and_prints_none(world: FraudWorld, tmp_path: Path) -> None:
    token_file = tmp_path / "scorer-tokens"
    token_file.write_text(f"# the current and the next token\n{TOKENS[0]}\n{TOKENS[1]}\n")
    env = {
        **os.environ,
        **cli_env(world.services, world.app, world.project),
        "SLIPSTREAM_SCORER_TOKENS_FILE": str(token_file),
    }
    env.pop("SLIPSTREAM_SCORER_TOKENS", None)
    port = free_port()
    log_path = tmp_path / "serve.log"
    cmd = [sys.executable, "-m", "slipstream", "serve", "--port", str(port), "--log-level", "info"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_ready(proc, port, log_path)
        _check_guarded(port, world)
    finally:
        proc.terminate()
        proc.wait(30)
    output = log_path.read_text()
    assert "bearer token required on /v1/* (2 accepted)" in output
    assert "unauthenticated" not in output
    assert not any(token in output for token in TOKENS)


def test_an_unreachable_redis_with_a_password_is_named_without_it(world: FraudWorld) -> None:
    password = f"pw-{uuid.uuid4().hex}"
    env = {
        **os.environ,
        **cli_env(world.services, world.app, world.project),
        "REDIS_URL": f"redis://app:{password}@127.0.0.1:{free_port()}/0",  # nothing listens there
    }
    prefix = f"leak-{uuid.uuid4().hex[:8]}."
    cmd = ["topics", "delete", "--prefix", prefix, "--redis-project", "leak_check", "--yes"]
    result = subprocess.run(
        [sys.executable, "-m", "slipstream", *cmd], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Redis at 'redis://app:***@127.0.0.1:" in output and "leak_check" in output
    assert password not in output
