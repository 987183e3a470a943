"""A SASL_SSL listener for the local broker (``infra up --kafka-sasl``, ``SLIPSTREAM_KAFKA_SASL=true``).

Everything lives in ``<state_dir>/kafka/sasl`` and is made once, by ``openssl`` and :mod:`secrets`, at the first
``up`` with SASL; later starts reuse it, so the login handed out stays valid:

* ``ca.crt``/``ca.key``: a private CA (EC P-256, 825 days), trusted by the clients (``ssl.ca.location``);
* ``server.pem``: the broker's PKCS#8 key and its certificate for ``127.0.0.1`` and ``localhost``, signed by that CA
  (Kafka's PEM keystore, no JDK keytool needed);
* ``password``: the SCRAM-SHA-512 password of :data:`USER` (32 random URL-safe characters), written into the
  cluster's metadata by ``kafka-storage format --add-scram`` (KRaft keeps SCRAM credentials in its metadata log).

The broker listens with SASL_SSL only on ``kafka_port`` (and its own controller listener on ``controller_port``,
loopback), and talks to itself (transaction markers) over the same listener as :data:`USER`. Keys and the password
are ``0600`` in a ``0700`` directory; ``infra down --wipe`` deletes them with the rest of the broker's state.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slipstream.infra.config import PlatformConfig
from slipstream.infra.redis_tls import _openssl, _write_secret, issue_server_certificate

__all__ = ["MECHANISM", "USER", "KafkaSASLFiles", "client_security", "ensure_sasl_files", "sasl_files"]

USER = "slipstream"
MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True, slots=True)
class KafkaSASLFiles:
    """Where the local broker's TLS material and SCRAM password live (nothing is read or made by this object)."""

    home: Path

    @property
    def ca_cert(self) -> Path:
        return self.home / "ca.crt"

    @property
    def keystore(self) -> Path:
        return self.home / "server.pem"

    @property
    def password_file(self) -> Path:
        return self.home / "password"

    def complete(self) -> bool:
        return all(path.is_file() for path in (self.ca_cert, self.keystore, self.password_file))

    def password(self) -> str:
        """The SCRAM password ("" before the first ``up`` with SASL: a client's login is then refused, saying so)."""
        try:
            return self.password_file.read_text(encoding="utf-8").strip()
        except OSError:
            return ""


def sasl_files(config: PlatformConfig) -> KafkaSASLFiles:
    return KafkaSASLFiles(config.kafka_state_dir.expanduser().resolve() / "sasl")


def ensure_sasl_files(files: KafkaSASLFiles, host: str) -> KafkaSASLFiles:
    """Make the CA, the broker's key and certificate and the password unless they are all there."""
    if files.complete():
        return files
    home = files.home
    home.mkdir(parents=True, exist_ok=True)
    home.chmod(0o700)
    issue_server_certificate(home, ca_name="Slipstream Kafka CA", host=host, usage="serverAuth,clientAuth")
    _openssl("pkcs8", "-topk8", "-nocrypt", "-in", "server.key", "-out", "server.pk8", cwd=home)
    key, cert = (home / "server.pk8").read_text(), (home / "server.crt").read_text()
    _write_secret(files.keystore, key + cert)
    for leftover in ("server.key", "server.pk8", "server.crt"):  # the keystore holds them
        (home / leftover).unlink(missing_ok=True)
    if not files.password():
        _write_secret(files.password_file, secrets.token_urlsafe(24) + "\n")
    return files


def _jaas(password: str) -> str:
    return f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{USER}" password="{password}";'


def server_properties(files: KafkaSASLFiles, broker: str, controller: str) -> dict[str, str]:
    """What the SASL_SSL listener changes in the single node's ``server.properties``."""
    return {
        "listeners": f"SASL_SSL://{broker},CONTROLLER://{controller}",
        "advertised.listeners": f"SASL_SSL://{broker},CONTROLLER://{controller}",
        "inter.broker.listener.name": "SASL_SSL",
        "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
        "sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config": _jaas(files.password()),
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(files.keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(files.ca_cert),
    }


def scram_format_args(files: KafkaSASLFiles) -> list[str]:
    """``kafka-storage format``'s arguments that store :data:`USER`'s SCRAM credential in the new cluster."""
    return ["--add-scram", f"{MECHANISM}=[name={USER},password={files.password()}]"]


def client_security(config: PlatformConfig) -> dict[str, Any]:
    """librdkafka's security settings for the local SASL_SSL broker (with the password; empty without SASL)."""
    if not config.kafka_sasl:
        return {}
    files = sasl_files(config)
    return {
        "security.protocol": "sasl_ssl",
        "sasl.mechanism": MECHANISM,
        "sasl.username": USER,
        "sasl.password": files.password(),
        "ssl.ca.location": str(files.ca_cert),
    }
