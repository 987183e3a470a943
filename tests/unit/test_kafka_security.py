"""Kafka's security settings: what they turn into for librdkafka and Faust, the errors a bad value gets (one line naming
the variable, before any work), and the passwords kept out of every repr, dump, error and launcher file mode."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from slipstream.app import Slipstream
from slipstream.exceptions import ConfigError
from slipstream.infra import kafka_sasl
from slipstream.infra.config import PlatformConfig
from slipstream.infra.exceptions import InfraConfigError
from slipstream.schemas.exceptions import KafkaAccessError, KafkaConfigError
from slipstream.schemas.secrets import mask_config
from slipstream.schemas.transport.connection import KafkaConnection, close_client, kafka_config
from slipstream.settings import load_settings

PASSWORD = "S3cr3t-Kafka-Passw0rd"  # noqa: S105 - a known value to look for in the output
KEY_PASSWORD = "K3y-Passw0rd-Secret"  # noqa: S105
BOOTSTRAP = "broker-1.example:9093,broker-2.example:9093"


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("SLIPSTREAM_", "KAFKA_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no .env file


def _pem(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    return path


def _scram(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, value in {
        "SLIPSTREAM_KAFKA_BOOTSTRAP_SERVERS": BOOTSTRAP,
        "SLIPSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "SLIPSTREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "SLIPSTREAM_KAFKA_SASL_USERNAME": "app",
        "SLIPSTREAM_KAFKA_SASL_PASSWORD": PASSWORD,
        "SLIPSTREAM_KAFKA_SSL_CA_FILE": str(_pem(tmp_path, "ca.crt")),
    }.items():
        monkeypatch.setenv(name, value)


def test_plaintext_by_default_leaves_every_client_config_as_it_was() -> None:
    app = Slipstream(load_settings(kafka_bootstrap_servers="k:9092"))
    assert app.kafka == KafkaConnection("k:9092")
    assert kafka_config(app.kafka, {"group.id": "g"}) == {"bootstrap.servers": "k:9092", "group.id": "g"}
    assert kafka_config("k:9092") == {"bootstrap.servers": "k:9092"}
    assert app.kafka.faust_options() == {"broker": "kafka://k:9092"}


def test_sasl_ssl_scram_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _scram(monkeypatch, tmp_path)
    app = Slipstream(load_settings())
    config = kafka_config(app.kafka, {"group.id": "g"})
    assert callable(config.pop("error_cb"))
    assert config == {
        "bootstrap.servers": BOOTSTRAP,
        "security.protocol": "sasl_ssl",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "app",
        "sasl.password": PASSWORD,
        "ssl.ca.location": str((tmp_path / "ca.crt").resolve()),
        "group.id": "g",
    }
    assert str(app.kafka) == BOOTSTRAP  # messages name the bootstrap servers
    assert app.kafka.describe() == f"{BOOTSTRAP} (SASL_SSL, SCRAM-SHA-512 as app)"
    assert mask_config(config)["sasl.password"] == "***"


def test_mutual_tls_and_oauthbearer(tmp_path: Path) -> None:
    ca, cert, key = _pem(tmp_path, "ca.pem"), _pem(tmp_path, "c.pem"), _pem(tmp_path, "k.pem")
    mtls = load_settings(
        kafka_bootstrap_servers="k:9093",
        kafka_security_protocol="ssl",  # case-insensitive
        kafka_ssl_ca_file=ca,
        kafka_ssl_cert_file=cert,
        kafka_ssl_key_file=key,
        kafka_ssl_key_password=KEY_PASSWORD,
    )
    config = Slipstream(mtls).kafka.security_config()
    assert config == {
        "security.protocol": "ssl",
        "ssl.ca.location": str(ca.resolve()),
        "ssl.certificate.location": str(cert.resolve()),
        "ssl.key.location": str(key.resolve()),
        "ssl.key.password": KEY_PASSWORD,
    }
    oidc = load_settings(
        kafka_bootstrap_servers="k:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="OAUTHBEARER",
        kafka_sasl_username="client-id",
        kafka_sasl_password=PASSWORD,
        kafka_sasl_oauth_token_url="https://idp.example/oauth2/token",  # noqa: S106 - a URL
        kafka_sasl_oauth_scope="kafka",
    )
    connection = Slipstream(oidc).kafka
    assert connection.security_config() == {
        "security.protocol": "sasl_ssl",
        "sasl.mechanism": "OAUTHBEARER",
        "sasl.oauthbearer.method": "oidc",
        "sasl.oauthbearer.client.id": "client-id",
        "sasl.oauthbearer.client.secret": PASSWORD,
        "sasl.oauthbearer.token.endpoint.url": "https://idp.example/oauth2/token",
        "sasl.oauthbearer.scope": "kafka",
    }
    with pytest.raises(KafkaConfigError, match="Faust runtime cannot use SASL mechanism 'OAUTHBEARER'"):
        connection.faust_options()


def test_faust_gets_sasl_credentials_with_a_tls_context(tmp_path: Path) -> None:
    connection = KafkaConnection("k:9093", "SASL_SSL", "SCRAM-SHA-256", "app", PASSWORD)
    options = connection.faust_options()
    credentials = options["broker_credentials"]
    assert options["broker"] == "kafka://k:9093"
    assert (credentials.username, credentials.password, str(credentials.mechanism.value)) == (
        "app",
        PASSWORD,
        "SCRAM-SHA-256",
    )
    assert isinstance(credentials.ssl_context, ssl.SSLContext) and str(credentials.protocol.value) == "SASL_SSL"
    assert PASSWORD not in repr(credentials)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"kafka_security_protocol": "SASL_SSLL"},
            "SLIPSTREAM_KAFKA_SECURITY_PROTOCOL='SASL_SSLL': Value error, must be one of PLAINTEXT, SSL, "
            "SASL_PLAINTEXT, SASL_SSL; did you mean 'SASL_SSL'?",
        ),
        (
            {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "SCRAM-SHA-521"},
            "SLIPSTREAM_KAFKA_SASL_MECHANISM='SCRAM-SHA-521': Value error, must be one of PLAIN, SCRAM-SHA-256, "
            "SCRAM-SHA-512, OAUTHBEARER; did you mean 'SCRAM-SHA-512'?",
        ),
        (
            {"kafka_security_protocol": "SASL_SSL"},
            "SLIPSTREAM_KAFKA_SECURITY_PROTOCOL='SASL_SSL' needs SLIPSTREAM_KAFKA_SASL_MECHANISM",
        ),
        (
            {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "PLAIN", "kafka_sasl_username": "u"},
            "SLIPSTREAM_KAFKA_SASL_MECHANISM='PLAIN' needs SLIPSTREAM_KAFKA_SASL_USERNAME and "
            "SLIPSTREAM_KAFKA_SASL_PASSWORD",
        ),
        (
            {"kafka_sasl_mechanism": "PLAIN", "kafka_sasl_username": "u", "kafka_sasl_password": PASSWORD},
            "SLIPSTREAM_KAFKA_SASL_MECHANISM='PLAIN' needs SLIPSTREAM_KAFKA_SECURITY_PROTOCOL SASL_SSL or "
            "SASL_PLAINTEXT, got 'PLAINTEXT'",
        ),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_cert_file": "CERT"},
            "SLIPSTREAM_KAFKA_SSL_CERT_FILE and SLIPSTREAM_KAFKA_SSL_KEY_FILE go together",
        ),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_ca_file": "/nowhere/ca.crt"},
            "SLIPSTREAM_KAFKA_SSL_CA_FILE='/nowhere/ca.crt': Value error, no such file",
        ),
        (
            {"kafka_ssl_ca_file": "CA"},
            "SLIPSTREAM_KAFKA_SSL_CA_FILE needs SLIPSTREAM_KAFKA_SECURITY_PROTOCOL SSL or SASL_SSL, got 'PLAINTEXT'",
        ),
        (
            {
                "kafka_security_protocol": "SASL_SSL",
                "kafka_sasl_mechanism": "OAUTHBEARER",
                "kafka_sasl_username": "id",
                "kafka_sasl_password": PASSWORD,
            },
            "SLIPSTREAM_KAFKA_SASL_MECHANISM='OAUTHBEARER' needs SLIPSTREAM_KAFKA_SASL_OAUTH_TOKEN_URL",
        ),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(
    overrides: dict[str, object], expected: str, tmp_path: Path
) -> None:
    given = {k: str(_pem(tmp_path, "x.pem")) if v in ("CERT", "CA") else v for k, v in overrides.items()}
    with pytest.raises(ConfigError) as info:
        load_settings(kafka_bootstrap_servers="k:9093", **given)
    message = str(info.value)
    assert expected in message and "\n" not in message
    assert PASSWORD not in message and PASSWORD not in repr(info.value.__cause__)


def test_security_needs_a_kafka_of_ones_own_and_the_launcher_one_broker() -> None:
    with pytest.raises(ConfigError, match="set SLIPSTREAM_KAFKA_BOOTSTRAP_SERVERS too"):
        load_settings(kafka_security_protocol="SSL")
    with pytest.raises(ConfigError, match="SLIPSTREAM_KAFKA_SASL .* choose one"):
        load_settings(kafka_sasl=True, kafka_bootstrap_servers="k:1", kafka_security_protocol="SSL")
    with pytest.raises(InfraConfigError, match="kafka_sasl needs the local backend and one broker"):
        PlatformConfig(kafka_sasl=True, brokers=3)


def test_passwords_never_in_repr_dumps_or_the_connection(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _scram(monkeypatch, tmp_path)
    monkeypatch.setenv("SLIPSTREAM_KAFKA_SSL_CERT_FILE", str(_pem(tmp_path, "c.pem")))
    monkeypatch.setenv("SLIPSTREAM_KAFKA_SSL_KEY_FILE", str(_pem(tmp_path, "k.pem")))
    monkeypatch.setenv("SLIPSTREAM_KAFKA_SSL_KEY_PASSWORD", KEY_PASSWORD)
    settings = load_settings()
    connection = Slipstream(settings).kafka
    shown = [repr(settings), str(settings), str(settings.model_dump()), settings.model_dump_json()]
    shown += [repr(connection), str(connection), connection.describe(), str(mask_config(connection.config()))]
    for text in shown:
        assert PASSWORD not in text and KEY_PASSWORD not in text, text
    assert connection.password == PASSWORD and connection.key_password == KEY_PASSWORD  # revealed to the client


def test_the_local_sasl_broker_and_its_clients(tmp_path: Path) -> None:
    config = PlatformConfig(state_dir=tmp_path, kafka_sasl=True, backend="local")
    files = kafka_sasl.sasl_files(config)
    files.home.mkdir(parents=True)
    files.password_file.write_text("pw-from-the-state-dir\n")
    props = kafka_sasl.server_properties(files, "127.0.0.1:9092", "127.0.0.1:9093")
    assert props["listeners"] == "SASL_SSL://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT"
    assert (
        'username="slipstream" password="pw-from-the-state-dir";'
        in props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]
    )
    assert kafka_sasl.scram_format_args(files) == [
        "--add-scram",
        "SCRAM-SHA-512=[name=slipstream,password=pw-from-the-state-dir]",
    ]
    app = Slipstream(load_settings(state_dir=tmp_path, kafka_sasl=True, backend="local"))
    assert app.kafka.security_config() == {**kafka_sasl.client_security(config), "security.protocol": "sasl_ssl"}
    assert app.kafka.describe() == "127.0.0.1:9092 (SASL_SSL, SCRAM-SHA-512 as slipstream)"
    assert kafka_sasl.client_security(PlatformConfig(state_dir=tmp_path)) == {}


def test_child_processes_get_the_same_connection(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The demo's and benchmarks' children read their settings from the environment the parent hands them."""
    _scram(monkeypatch, tmp_path)
    parent = Slipstream(load_settings())
    for name, value in parent.kafka_environment().items():
        monkeypatch.setenv(name, value)
    assert Slipstream(load_settings()).kafka == parent.kafka


def test_children_of_the_local_sasl_platform_get_its_login(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = PlatformConfig(state_dir=tmp_path, kafka_sasl=True, backend="local")
    files = kafka_sasl.sasl_files(config)
    files.home.mkdir(parents=True)
    files.password_file.write_text("local-pw\n")
    files.ca_cert.write_text("-----BEGIN CERTIFICATE-----\n")  # made by the first `infra up --kafka-sasl`
    local = Slipstream(load_settings(state_dir=tmp_path, kafka_sasl=True, backend="local"))
    monkeypatch.setenv("SLIPSTREAM_KAFKA_SASL", "true")  # inherited: the child's settings must still be valid
    for name, value in local.kafka_environment().items():
        monkeypatch.setenv(name, value)
    child = Slipstream(load_settings())
    assert child.external and child.kafka == local.kafka and child.kafka.password == "local-pw"  # noqa: S105


def test_oauthbearer_is_refused_with_the_faust_runtime_at_start_up() -> None:
    with pytest.raises(ConfigError, match="needs SLIPSTREAM_ENGINE_RUNTIME=kafka"):
        load_settings(
            engine_runtime="faust",
            kafka_bootstrap_servers="k:9093",
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism="OAUTHBEARER",
            kafka_sasl_username="client-id",
            kafka_sasl_password=PASSWORD,
            kafka_sasl_oauth_token_url="https://idp.example/token",  # noqa: S106 - a URL
        )


class _Client:
    """A producer whose flush raises as a secured client's error_cb does on a refused login."""

    def __init__(self, refuse: bool) -> None:
        self.refuse = refuse
        self.calls: list[str] = []

    def purge(self) -> None:
        self.calls.append("purge")

    def flush(self, timeout: float) -> int:
        self.calls.append(f"flush {timeout:g}")
        if self.refuse:
            msg = "Kafka at b:9093 refused the connection: SASL authentication error"
            raise KafkaAccessError(msg)
        return 0

    def close(self) -> None:
        self.calls.append("close")


def test_a_client_is_closed_even_when_its_flush_raises_a_refused_login() -> None:
    quiet, refusing = _Client(refuse=False), _Client(refuse=True)
    close_client(quiet, flush_s=0, discard=True)
    assert quiet.calls == ["purge", "flush 0", "close"]
    with pytest.raises(KafkaAccessError, match="refused the connection"):
        close_client(refusing, flush_s=10)
    assert refusing.calls == ["flush 10", "close"]  # closed, then the refusal propagates
