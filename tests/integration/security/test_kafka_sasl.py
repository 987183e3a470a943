"""Kafka over SASL_SSL (SCRAM-SHA-512, a private CA) end to end on a real broker of the module's own, started by the
launcher (``infra up --kafka-sasl``'s code) on ports 17292/17293, away from the shared services (19092): Avro events
through EventProducer/EventConsumer, the feature engine on both runtimes (confluent-kafka and Faust/aiokafka), the
CLI configured by ``SLIPSTREAM_KAFKA_*``; and the failures met first (a wrong password, a plain-text client), each
fast and in one line naming Kafka and its bootstrap servers, never quoting the password."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from slipstream.infra.config import PlatformConfig
from slipstream.infra.kafka_local import LocalKafka
from slipstream.infra.kafka_sasl import MECHANISM, USER, sasl_files
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.exceptions import KafkaAccessError, TopicError
from slipstream.schemas.topics import TopicCatalog
from slipstream.schemas.transport import EventConsumer, EventProducer, TopicAdmin
from slipstream.schemas.transport.connection import KafkaConnection
from slipstream.streams.engine.app import EngineJob, run_threads
from slipstream.streams.engine.settings import EngineSettings
from tests.conftest import KAFKA_VERSION, Services
from tests.fraud_reference import reference, small_fraud_streams
from tests.samples import sample

pytestmark = pytest.mark.integration

SASL_PORT, SASL_CONTROLLER_PORT = 17292, 17293
WRONG = "Wr0ngKafkaPassw0rdNotTheRealOne"


@dataclass(frozen=True)
class SASLKafka:
    connection: KafkaConnection
    state_dir: Path

    @property
    def password(self) -> str:
        assert self.connection.password is not None
        return self.connection.password

    def env(self, password: str) -> dict[str, str]:
        """A ``slipstream`` command's environment for this Kafka, as a deployment would set it."""
        return {
            **os.environ,
            "SLIPSTREAM_STATE_DIR": str(self.state_dir / "cli"),
            "SLIPSTREAM_KAFKA_BOOTSTRAP_SERVERS": self.connection.bootstrap,
            "SLIPSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "SLIPSTREAM_KAFKA_SASL_MECHANISM": MECHANISM,
            "SLIPSTREAM_KAFKA_SASL_USERNAME": USER,
            "SLIPSTREAM_KAFKA_SASL_PASSWORD": password,
            "SLIPSTREAM_KAFKA_SSL_CA_FILE": str(self.connection.ca_file),
        }


@pytest.fixture(scope="module")
def sasl_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SASLKafka]:
    state_dir = tmp_path_factory.mktemp("sasl-platform")
    config = PlatformConfig(
        state_dir=state_dir,
        backend="local",
        kafka_version=KAFKA_VERSION,
        kafka_port=SASL_PORT,
        controller_port=SASL_CONTROLLER_PORT,
        kafka_sasl=True,
        startup_timeout_s=180,
    )
    broker = LocalKafka(config)
    status = broker.up()
    assert status.up, status
    files = sasl_files(config)
    connection = KafkaConnection(
        config.bootstrap_servers,
        protocol="SASL_SSL",
        mechanism=MECHANISM,
        username=USER,
        password=files.password(),
        ca_file=str(files.ca_cert),
    )
    try:
        yield SASLKafka(connection, state_dir)
    finally:
        broker.down()


@pytest.fixture
def sasl_contracts(sasl_kafka: SASLKafka) -> Iterator[Contracts]:
    base = Contracts.default()
    catalog = TopicCatalog(f"t-{uuid.uuid4().hex[:10]}.")
    admin = TopicAdmin(sasl_kafka.connection)
    admin.apply(catalog)
    yield Contracts(catalog, base.registry, base.framing)
    admin.delete(admin.matching(catalog.prefix))


def _read_all(connection: KafkaConnection, contracts: Contracts, topic: str, expected: int) -> list[dict[str, Any]]:
    values: list[dict[str, Any]] = []
    with EventConsumer(connection, contracts, [topic]) as consumer:
        for _ in range(60):
            batch = consumer.poll_batch(max_records=5000, timeout=0.5)
            assert batch.failures == []
            values += [event.value for event in batch.events]
            if len(values) >= expected and not batch.events:
                break
    return values


def test_avro_events_round_trip_over_sasl_ssl(sasl_kafka: SASLKafka, sasl_contracts: Contracts) -> None:
    records = [sample("transaction", i) for i in range(50)]
    with EventProducer(sasl_kafka.connection, sasl_contracts) as producer:
        for record in records:
            producer.send("transactions", record)
    got = _read_all(sasl_kafka.connection, sasl_contracts, "transactions", len(records))
    key = "transaction_id"
    assert sorted(got, key=lambda r: r[key]) == sorted(records, key=lambda r: r[key])
    # The listener takes SASL_SSL only: a plain-text client gets no metadata.
    with pytest.raises(TopicError):
        TopicAdmin(sasl_kafka.connection.bootstrap, timeout_s=2.0).existing()


@pytest.mark.parametrize("runtime", ["kafka", "faust"])
def test_the_feature_engine_runs_over_sasl_ssl(
    sasl_kafka: SASLKafka, sasl_contracts: Contracts, services: Services, runtime: str
) -> None:
    """The fraud engine's two stages, their repartition hop, changelogs and feature log over SASL_SSL, on both
    runtimes (the Faust one through aiokafka with ``broker_credentials``): the reference vectors, exactly."""
    tx, labels = small_fraud_streams(n_customers=8, n_terminals=16, days=6)
    with EventProducer(sasl_kafka.connection, sasl_contracts, linger_ms=5) as producer:
        for record in tx:
            producer.send("transactions", record)
        for record in labels:
            producer.send("labels", record)
    settings = EngineSettings(
        sasl_kafka.connection, services.redis_url, project=f"t{uuid.uuid4().hex[:8]}", runtime=runtime
    )
    stats = run_threads(EngineJob(settings, sasl_contracts.catalog.prefix, "fraud"), threading.Event(), until_idle_s=3)
    assert stats["customer"].applied == len(tx)
    want = reference(tx, labels)
    latest: dict[str, dict[str, float]] = {}
    for value in _read_all(sasl_kafka.connection, sasl_contracts, "feature-log", len(want)):
        latest[str(value["event_id"])] = dict(value["features"])
    assert len(latest) == len(want)
    for tid, vector in want.items():
        assert latest[str(tid)] == pytest.approx(vector, abs=1e-9)


def test_a_wrong_password_fails_fast_in_one_line(sasl_kafka: SASLKafka) -> None:
    wrong = KafkaConnection(**{**_fields(sasl_kafka.connection), "password": WRONG})
    started = time.monotonic()
    with pytest.raises(KafkaAccessError) as info:
        TopicAdmin(wrong).existing()
    assert time.monotonic() - started < 5.0
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"Kafka at 127.0.0.1:{SASL_PORT} (SASL_SSL")
    assert "invalid credentials" in message and WRONG not in message and sasl_kafka.password not in message
    started = time.monotonic()
    with pytest.raises(KafkaAccessError):  # `tail`'s consumer, which assigns itself from the metadata
        EventConsumer(wrong, Contracts.default(), ["transactions"])
    with EventConsumer(wrong, Contracts.default(), ["transactions"], group_id="g") as member:
        with pytest.raises(KafkaAccessError):  # a group member's poll (librdkafka alone retries for ever)
            for _ in range(20):
                member.poll_batch(timeout=0.5)
    assert time.monotonic() - started < 10.0


@pytest.mark.parametrize("runtime", ["kafka", "faust"])
def test_a_wrong_password_stops_the_engine_and_a_processor_at_once_on_both_runtimes(
    sasl_kafka: SASLKafka, sasl_contracts: Contracts, services: Services, runtime: str
) -> None:
    """The long-running processes fail with the same one-line refusal, on the Faust runtime too (its stages and
    processors declare their topics through the same admin client before aiokafka connects): never a hang."""
    from slipstream.monitoring.outcomes.processor import JoinSettings, run_outcomes
    from slipstream.processor_hosts import hosting

    wrong = KafkaConnection(**{**_fields(sasl_kafka.connection), "password": WRONG})
    settings = EngineSettings(wrong, services.redis_url, project=f"t{uuid.uuid4().hex[:8]}", runtime=runtime)
    started = time.monotonic()
    with pytest.raises(KafkaAccessError) as engine:
        run_threads(EngineJob(settings, sasl_contracts.catalog.prefix, "fraud"), threading.Event(), until_idle_s=3)
    with pytest.raises(KafkaAccessError) as join:
        run_outcomes(wrong, sasl_contracts, JoinSettings(), threading.Event(), until_idle_s=3, host=hosting(runtime))
    assert time.monotonic() - started < 10.0  # both: librdkafka alone would retry for ever
    for refusal in (str(engine.value), str(join.value)):
        assert "\n" not in refusal and refusal.startswith(f"Kafka at 127.0.0.1:{SASL_PORT} (SASL_SSL"), refusal
        assert WRONG not in refusal and sasl_kafka.password not in refusal


def _fields(connection: KafkaConnection) -> dict[str, Any]:
    return {name: getattr(connection, name) for name in KafkaConnection.__dataclass_fields__}


def _slipstream(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "slipstream", *args], env=env, capture_output=True, text=True, timeout=120
    )
    return done, time.monotonic() - started


def test_the_cli_connects_with_the_settings_and_never_prints_the_password(sasl_kafka: SASLKafka) -> None:
    prefix = f"t-{uuid.uuid4().hex[:10]}."
    env = {**sasl_kafka.env(sasl_kafka.password), "SLIPSTREAM_TOPIC_PREFIX": prefix}
    done, good_s = _slipstream(["topics", "apply"], env)
    assert done.returncode == 0, done.stderr
    assert f"{prefix}transactions" in TopicAdmin(sasl_kafka.connection).existing()
    assert sasl_kafka.password not in done.stdout + done.stderr

    bad, elapsed = _slipstream(["topics", "apply"], {**sasl_kafka.env(WRONG), "SLIPSTREAM_TOPIC_PREFIX": prefix})
    # About as long as a working run (the CLI's start-up: 3-20 s on a loaded 2-core machine) plus the refusal (~0.5 s);
    # librdkafka alone would retry until topic admin's 30 s timeout and then report a transport failure.
    assert bad.returncode == 1 and elapsed < good_s + 20.0, (bad.returncode, elapsed, good_s)
    errors = [line for line in bad.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, bad.stderr
    assert f"Kafka at 127.0.0.1:{SASL_PORT} (SASL_SSL, SCRAM-SHA-512 as slipstream) refused" in errors[0]
    assert WRONG not in bad.stdout + bad.stderr and sasl_kafka.password not in bad.stdout + bad.stderr

    status, _ = _slipstream(  # the local SASL platform's status: the password file is read, never printed
        ["infra", "status", "--json"],
        {
            **os.environ,
            "SLIPSTREAM_STATE_DIR": str(sasl_kafka.state_dir),
            "SLIPSTREAM_KAFKA_SASL": "true",
            "SLIPSTREAM_KAFKA_PORT": str(SASL_PORT),
            "SLIPSTREAM_CONTROLLER_PORT": str(SASL_CONTROLLER_PORT),
            "SLIPSTREAM_BACKEND": "local",
        },
    )
    assert json.loads(status.stdout)["kafka"]["up"] is True, status.stdout
    assert sasl_kafka.password not in status.stdout + status.stderr
