"""The whole fraud pipeline secured end to end, as a deployment runs it: ``slipstream`` commands configured only by
``SLIPSTREAM_*`` variables (Kafka over SASL_SSL with SCRAM-SHA-512 and a private CA, Redis over TLS with an ACL login,
the HTTP scorer behind a bearer token) produce a small fraud stream, run the feature engine into Redis, and score it
on Kafka (``score-stream`` → ``predictions``) and over HTTP (``serve``). The predictions carry the reference features
(the sequential replay every engine must equal, as on the plain-text path), HTTP and Kafka agree, and no line any of
those processes printed or logged — nor the test's own logs, nor any file they wrote — holds a password or the token.

The module starts a platform of its own (the launcher's ``--kafka-sasl --redis-tls`` code) on ports 17492/17493
(Kafka) and 17401 (Redis), away from the shared services (19092, 16379), the cluster tests (17050+, 27050+, 29000+)
and the other security tests (17201, 17292/17293), so it can run beside any of them."""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
from confluent_kafka import Consumer, TopicPartition
from pydantic import SecretStr

from slipstream.app import Slipstream
from slipstream.features.redis_client import redis_client
from slipstream.features.redis_keys import project_key_count
from slipstream.infra.config import PlatformConfig
from slipstream.infra.kafka_sasl import MECHANISM, USER, sasl_files
from slipstream.infra.platform import Platform
from slipstream.infra.redis_tls import tls_files
from slipstream.schemas.exceptions import TopicError
from slipstream.schemas.transport import TopicAdmin
from slipstream.schemas.transport.connection import KafkaConnection, kafka_config
from slipstream.settings import load_settings
from tests.conftest import KAFKA_VERSION
from tests.fraud_reference import reference, small_fraud_streams
from tests.integration.serving.fixtures import register, train_booster
from tests.integration.serving.http_server import Client, free_port
from tests.integration.serving.test_fraud_scoring import _body

pytestmark = pytest.mark.integration

KAFKA_PORT, CONTROLLER_PORT, REDIS_PORT = 17492, 17493, 17401
DAY_US = 86_400 * 1_000_000
FEATURE_TOL = 1e-9
# The platform's own files that hold a secret by design (0600, in a 0700 directory): the generated passwords, the
# broker's JAAS line and Redis's ACL file. Every other file of the platform is scanned (logs and topic data included).
SECRET_HOLDERS = ("kafka/sasl/password", "kafka/server.properties", "redis/tls/password", "redis/tls/users.acl")


@dataclass(frozen=True)
class SecuredPlatform:
    config: PlatformConfig
    kafka: KafkaConnection
    redis_password: str
    redis_ca: Path

    @property
    def kafka_password(self) -> str:
        assert self.kafka.password is not None
        return self.kafka.password

    @property
    def redis_url(self) -> str:
        """As a deployment writes it: the login in the URL, the CA in its own variable."""
        return f"rediss://{USER}:{quote(self.redis_password, safe='')}@127.0.0.1:{REDIS_PORT}/0"


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredPlatform]:
    config = PlatformConfig(
        state_dir=tmp_path_factory.mktemp("secured-platform"),
        backend="local",
        kafka_version=KAFKA_VERSION,
        kafka_port=KAFKA_PORT,
        controller_port=CONTROLLER_PORT,
        redis_port=REDIS_PORT,
        kafka_sasl=True,
        redis_tls=True,
        startup_timeout_s=180,
    )
    platform = Platform(config)
    try:
        statuses = platform.up()
        assert all(status.up for status in statuses.values()), statuses
        kafka_files, redis_files = sasl_files(config), tls_files(config)
        connection = KafkaConnection(
            config.bootstrap_servers,
            protocol="SASL_SSL",
            mechanism=MECHANISM,
            username=USER,
            password=kafka_files.password(),
            ca_file=str(kafka_files.ca_cert),
        )
        redis_password = redis_files.password_file.read_text().strip()
        yield SecuredPlatform(config, connection, redis_password, redis_files.ca_cert)
    finally:
        platform.down()


class Outputs:
    """Everything the processes of the test printed or logged, by label, for the leak check."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}
        self.started: list[subprocess.Popen[bytes]] = []

    def add(self, label: str, text: str) -> str:
        self.texts[label] = self.texts.get(label, "") + text
        return text

    def run(self, label: str, args: list[str], env: dict[str, str], cwd: Path) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "slipstream", *args],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        self.add(label, done.stdout + done.stderr)
        assert done.returncode == 0, (label, done.stdout, done.stderr)
        return done.stdout

    def start(self, label: str, args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
        # stdout and stderr go to files, read back into `texts` by `finish`
        with (cwd / f"{label}.out").open("wb") as stdout, (cwd / f"{label}.err").open("wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "slipstream", *args],
                env=env,
                cwd=cwd,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,  # its own process group: `close` can stop the engine's stage processes too
            )
        self.started.append(proc)
        return proc

    def finish(self, label: str, proc: subprocess.Popen[bytes], cwd: Path, *, stop: bool = False, code: int = 0) -> str:
        """Wait for ``proc`` (after SIGTERM with ``stop``) and keep its output; without ``stop``, it must exit
        with ``code``. Returns its stdout."""
        if stop:
            proc.terminate()
        returned = proc.wait(120)
        stdout = (cwd / f"{label}.out").read_text(errors="replace")
        text = self.add(label, stdout + (cwd / f"{label}.err").read_text(errors="replace"))
        assert stop or returned == code, (label, returned, text)
        return stdout

    def close(self) -> None:
        """Stop what a failed test left running (the command and its children, by its process group)."""
        for proc in self.started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)


@pytest.fixture
def outputs() -> Iterator[Outputs]:
    out = Outputs()
    try:
        yield out
    finally:
        out.close()


def _forms(secret: str) -> set[str]:
    return {secret, quote(secret, safe=""), quote(secret, safe="/")}


def _leaks(text: str, needles: set[str]) -> set[str]:
    """The needles found in ``text``, also across a wrapped line or a table border (a console may wrap)."""
    squashed = re.sub(r"[\s│┃║|]+", "", text)
    return {needle for needle in needles if needle in text or needle in squashed}


def _base_env() -> dict[str, str]:
    """The test process's environment without any Slipstream setting, so only what the test sets applies."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SLIPSTREAM_") and k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")
    }


def _cli_env(secured: SecuredPlatform, work: Path, prefix: str, project: str, token: str) -> dict[str, str]:
    """A ``slipstream`` command's environment, as a deployment sets it: its services, their secrets, its state."""
    return {
        **_base_env(),
        "COLUMNS": "250",  # a console wider than any line: nothing is wrapped out of the grep's sight
        "SLIPSTREAM_STATE_DIR": str(work / "state"),
        "SLIPSTREAM_FEAST_REPO_DIR": str(work / "feast"),
        "SLIPSTREAM_OFFLINE_DIR": str(work / "offline"),
        "SLIPSTREAM_TOPIC_PREFIX": prefix,
        "SLIPSTREAM_FEAST_PROJECT": project,
        "SLIPSTREAM_KAFKA_BOOTSTRAP_SERVERS": secured.kafka.bootstrap,
        "SLIPSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "SLIPSTREAM_KAFKA_SASL_MECHANISM": MECHANISM,
        "SLIPSTREAM_KAFKA_SASL_USERNAME": USER,
        "SLIPSTREAM_KAFKA_SASL_PASSWORD": secured.kafka_password,
        "SLIPSTREAM_KAFKA_SSL_CA_FILE": str(secured.kafka.ca_file),
        "SLIPSTREAM_REDIS_URL": secured.redis_url,
        "SLIPSTREAM_REDIS_TLS_CA_FILE": str(secured.redis_ca),
        "SLIPSTREAM_SCORER_TOKENS": token,
    }


def _status_env(secured: SecuredPlatform) -> dict[str, str]:
    """`infra status`'s environment for the module's platform: its state dir, ports and flags (no secret given:
    the command reads the password files)."""
    return {
        **_base_env(),
        "COLUMNS": "250",
        "SLIPSTREAM_STATE_DIR": str(secured.config.state_dir),
        "SLIPSTREAM_BACKEND": "local",
        "SLIPSTREAM_KAFKA_SASL": "true",
        "SLIPSTREAM_KAFKA_PORT": str(KAFKA_PORT),
        "SLIPSTREAM_CONTROLLER_PORT": str(CONTROLLER_PORT),
        "SLIPSTREAM_REDIS_TLS": "true",
        "SLIPSTREAM_REDIS_PORT": str(REDIS_PORT),
    }


def _commit_group_at_end(connection: KafkaConnection, group: str, topic: str) -> None:
    """Commit ``group``'s offsets at the topic's current end: `score-stream` (a group with committed offsets resumes
    where it stopped) then scores exactly what is produced afterwards, whenever it joins."""
    consumer = Consumer({**kafka_config(connection), "group.id": group, "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = [
            TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
            for p in partitions
        ]
        consumer.commit(offsets=ends, asynchronous=False)
    finally:
        consumer.close()


def _wait_ready(proc: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, "`slipstream serve` exited"
        try:
            client = Client(port)
            status, _ = client.request("GET", "/readyz")  # open: no token needed to probe
            client.close()
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    pytest.fail("`slipstream serve` never became ready")


def test_the_pipeline_runs_secured_end_to_end_and_prints_no_secret(
    secured: SecuredPlatform,
    outputs: Outputs,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    token = f"tok-{secrets.token_urlsafe(32)}"
    needles = _forms(secured.kafka_password) | _forms(secured.redis_password) | _forms(token)
    assert _leaks(f"x {secured.redis_password[:9]}\n│ {secured.redis_password[9:]} y", needles)  # the check works
    prefix, project = f"t-{secrets.token_hex(5)}.", f"t{secrets.token_hex(4)}"
    work = tmp_path
    env = _cli_env(secured, work, prefix, project, token)
    out = outputs

    # Events: 12 days of history (with the labels known by then), then each customer's first transaction of day 13.
    tx, labels = small_fraud_streams(n_customers=60, n_terminals=120, days=14)
    cutoff = tx[0]["event_time"] // DAY_US * DAY_US + 12 * DAY_US
    history_tx = [r for r in tx if r["event_time"] < cutoff]
    history_labels = [r for r in labels if r["event_time"] < cutoff]
    firsts: dict[int, dict[str, Any]] = {}
    for record in tx:
        if cutoff <= record["event_time"] < cutoff + DAY_US:
            firsts.setdefault(record["customer_id"], record)
    live = sorted(firsts.values(), key=lambda r: (r["event_time"], r["transaction_id"]))
    assert len(live) >= 20
    files = {}
    for name, records in (("history", history_tx), ("labels", history_labels)):
        files[name] = work / f"{name}.jsonl"
        files[name].write_text("".join(json.dumps(r) + "\n" for r in records))

    out.run("topics-apply", ["topics", "apply"], env, work)
    producing = [
        (f"produce-{name}", out.start(f"produce-{name}", ["produce", topic, "-f", str(files[name])], env, work))
        for name, topic in (("history", "transactions"), ("labels", "labels"))
    ]
    for label, proc in producing:
        out.finish(label, proc, work)
    engine = out.start("features-run", ["features", "run", "--until-idle", "3", "--quiet"], env, work)

    # Meanwhile, in this process (its logs are in caplog): a champion trained on the history, registered in MLflow and
    # promoted on model-events over SASL_SSL, by a composition root given the same settings.
    settings = load_settings(
        state_dir=work / "state",
        topic_prefix=prefix,
        feast_project=project,
        kafka_bootstrap_servers=secured.kafka.bootstrap,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism=MECHANISM,
        kafka_sasl_username=USER,
        kafka_sasl_password=SecretStr(secured.kafka_password),
        kafka_ssl_ca_file=secured.kafka.ca_file,
        redis_url=SecretStr(secured.redis_url),
        redis_tls_ca_file=secured.redis_ca,
    )
    app = Slipstream(settings)
    frauds = {int(r["transaction_id"]) for r in history_labels if r["is_fraud"]}
    version = register(app.model_registry, *train_booster(reference(history_tx, history_labels), frauds, seed=1))
    producer = app.producer()
    try:
        app.model_registry.promote("fraud", version, producer=producer)
    finally:
        producer.close()  # closed, not left to the collector: no client may outlive the module's broker
    # The HTTP scorer starts now (it loads the champion at start-up) and answers once the engine is done.
    port = free_port()
    serve = out.start("serve", ["serve", "--port", str(port), "--log-level", "debug"], env, work)
    _commit_group_at_end(secured.kafka, f"{prefix}slipstream-scorer-fraud", f"{prefix}transactions")
    out.finish("features-run", engine, work)
    assert project_key_count(app.redis_url, project) > 0  # the engine wrote over TLS with the ACL login

    # Live: the transactions (from this process: `produce` ran above), scored by the Kafka scorer (until idle) and
    # the HTTP scorer (with the token) side by side.
    producer = app.producer(linger_ms=5)
    try:
        for record in live:
            producer.send("transactions", record)
    finally:
        producer.close()
    scorer = out.start(
        "score-stream", ["score-stream", "--until-idle", "3", "--quiet", "--log-level", "debug"], env, work
    )
    http: dict[int, dict[str, Any]] = {}
    try:
        _wait_ready(serve, port)
        client = Client(port)
        try:
            status, body = client.request("POST", "/v1/fraud/score", _body(live[0]))
            assert (status, body["error"]) == (401, "unauthorized")
        finally:
            client.close()
        client = Client(port)
        try:
            for record in live:
                status, body = client.request(
                    "POST", "/v1/fraud/score", _body(record), {"authorization": f"Bearer {token}"}
                )
                assert status == 200, body
                http[record["transaction_id"]] = body
        finally:
            client.close()
    finally:
        out.finish("serve", serve, work, stop=True)
    out.finish("score-stream", scorer, work)
    assert "bearer token required on /v1/* (1 accepted)" in out.texts["serve"]
    assert f"{len(live):,}" in out.texts["score-stream"]

    # Side by side: the predictions read back by `tail` over SASL_SSL; the platform's status; and a command given a
    # wrong Redis password (one that needs percent-encoding), which must fail naming Redis, quoting neither password.
    tail = out.start("tail", ["tail", "predictions", "--max", str(len(live)), "--idle-timeout", "15"], env, work)
    infra = out.start("infra-status", ["infra", "status", "--json"], _status_env(secured), work)
    wrong = f"Wr0ng@{secrets.token_hex(8)}/pw"
    needles |= _forms(wrong)
    wrong_env = {
        **env,
        "SLIPSTREAM_REDIS_URL": secured.redis_url.replace(
            quote(secured.redis_password, safe=""), quote(wrong, safe="")
        ),
    }
    assert wrong_env["SLIPSTREAM_REDIS_URL"] != env["SLIPSTREAM_REDIS_URL"]
    unused = f"t-{secrets.token_hex(5)}."  # no topic has it: nothing is deleted whatever happens
    args = ["topics", "delete", "--prefix", unused, "--redis-project", project, "--yes"]
    refused = out.start("wrong-redis-password", args, wrong_env, work)

    tailed = out.finish("tail", tail, work)
    predictions = {int(p["event_id"]): p for p in (json.loads(line)["value"] for line in tailed.splitlines())}
    assert set(predictions) == set(http) == {r["transaction_id"] for r in live}
    want = reference(history_tx + live, history_labels)
    for tid, prediction in predictions.items():
        assert prediction["model_version"] == version == http[tid]["model"]["version"]
        assert prediction["features"] == http[tid]["features"]
        assert prediction["score"] == pytest.approx(http[tid]["score"], abs=1e-12)
        for name, value in prediction["features"].items():
            assert value == pytest.approx(want[tid][name], abs=FEATURE_TOL), (tid, name)
    status = json.loads(out.finish("infra-status", infra, work))
    assert status["kafka"]["up"] is True and status["redis"]["up"] is True, status
    out.finish("wrong-redis-password", refused, work, code=1)
    refusal = out.texts["wrong-redis-password"]
    assert f"rediss://{USER}:***@127.0.0.1:{REDIS_PORT}/0" in refusal and "login refused" in refusal, refusal

    # The secrets reached the services: they worked above, and the services refuse whoever comes without them.
    with pytest.raises(TopicError):
        TopicAdmin(secured.kafka.bootstrap, timeout_s=2.0).existing()
    with pytest.raises(redis.AuthenticationError):
        redis_client(app.redis_url.replace(f"{USER}:{quote(secured.redis_password, safe='')}@", "")).ping()

    # The leak check: every process's output, the test's own logs and output, every file the commands wrote (the
    # event files aside) and every file of the platform but those that hold a secret by design.
    captured = capfd.readouterr()
    out.add("test-stdout-stderr", captured.out + captured.err)
    out.add("caplog", caplog.text + "".join(str(r.args) for r in caplog.records))
    assert len(caplog.records) > 0 and all(out.texts.values()), [k for k, v in out.texts.items() if not v]
    written = [p for p in work.rglob("*") if p.is_file() and p.suffix != ".jsonl"]
    state = secured.config.state_dir
    written += [
        p
        for p in state.rglob("*")
        if p.is_file()
        and p.relative_to(state).as_posix() not in SECRET_HOLDERS
        and p.suffix not in (".index", ".timeindex")  # Kafka's offset indexes: sparse 10 MB files of offsets, no data
    ]
    for path in written:
        out.add(f"file {path}", path.read_bytes().decode("utf-8", errors="replace"))
    assert len(written) > 5
    found = {label: _leaks(text, needles) for label, text in out.texts.items()}
    assert {label: sorted(hits) for label, hits in found.items() if hits} == {}
