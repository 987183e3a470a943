"""Kafka's security settings, a part of the one :class:`~slipstream.settings.Settings` (which inherits them).

``SLIPSTREAM_KAFKA_SECURITY_PROTOCOL`` and the rest (docs/security.md). They are checked at start-up, before any
work, each problem one line naming the variable: an unknown protocol or mechanism (with "did you mean"), a SASL
mechanism without its login, a certificate without its key, a file that does not exist. The password and the key
password are :class:`~pydantic.SecretStr`, never quoted. :func:`kafka_connection` turns them into the
:class:`~slipstream.schemas.transport.connection.KafkaConnection` every Kafka client gets.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings

from slipstream.schemas.transport.connection import PROTOCOLS, SASL_MECHANISMS, KafkaConnection

KAFKA_SECRETS = frozenset({"kafka_sasl_password", "kafka_ssl_key_password"})  # never quoted
_FILES = ("kafka_ssl_ca_file", "kafka_ssl_cert_file", "kafka_ssl_key_file")


def _one_of(value: str, choices: tuple[str, ...]) -> str:
    wanted = value.strip().upper().replace("_", "-") if "SCRAM" in value.upper() else value.strip().upper()
    if wanted in choices:
        return wanted
    close = difflib.get_close_matches(wanted, choices, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    msg = f"must be one of {', '.join(choices)}{hint}"
    raise ValueError(msg)


class KafkaSecuritySettings(BaseSettings):
    """How Slipstream's Kafka clients authenticate and encrypt (``SLIPSTREAM_KAFKA_*``); PLAINTEXT by default."""

    kafka_security_protocol: str = Field(
        "PLAINTEXT",
        description="Kafka's security.protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (for a managed Kafka).",
    )
    kafka_sasl_mechanism: str | None = Field(
        None,
        description=(
            "SASL mechanism with SASL_*: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, or OAUTHBEARER (OIDC client "
            "credentials: the username is the client id, the password the client secret; confluent-kafka runtime)."
        ),
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name (OAUTHBEARER: the OIDC client id).")
    kafka_sasl_password: SecretStr | None = Field(
        None, description="SASL password (OAUTHBEARER: the client secret). A secret, never printed."
    )
    kafka_sasl_oauth_token_url: str | None = Field(None, description="OAUTHBEARER: the OIDC token endpoint URL.")
    kafka_sasl_oauth_scope: str | None = Field(None, description="OAUTHBEARER: the scope to ask for (optional).")
    kafka_ssl_ca_file: Path | None = Field(
        None, description="CA certificate(s) (PEM) Kafka's certificate is verified against (default: the system's)."
    )
    kafka_ssl_cert_file: Path | None = Field(
        None, description="Client certificate (PEM), for mutual TLS; with the key."
    )
    kafka_ssl_key_file: Path | None = Field(None, description="The client certificate's private key (PEM).")
    kafka_ssl_key_password: SecretStr | None = Field(
        None, description="Password of an encrypted client key. A secret, never printed."
    )
    kafka_sasl: bool = Field(
        False,
        description=(
            "Run the local platform's broker with a SASL_SSL listener (SCRAM-SHA-512; a private CA, its certificate "
            "and a random password made once in <state_dir>/kafka/sasl; local backend, one broker)."
        ),
    )

    @field_validator("kafka_security_protocol")
    @classmethod
    def _protocol(cls, value: str) -> str:
        return _one_of(value, PROTOCOLS)

    @field_validator("kafka_sasl_mechanism")
    @classmethod
    def _mechanism(cls, value: str | None) -> str | None:
        return None if value is None or not value.strip() else _one_of(value, SASL_MECHANISMS)

    @field_validator(*_FILES)
    @classmethod
    def _file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.expanduser().is_file():
            msg = "no such file"
            raise ValueError(msg)
        return value.expanduser().resolve() if value is not None else None

    @model_validator(mode="after")
    def _consistent(self) -> KafkaSecuritySettings:
        protocol, mechanism = self.kafka_security_protocol, self.kafka_sasl_mechanism
        where = f"SLIPSTREAM_KAFKA_SECURITY_PROTOCOL={protocol!r}"
        if protocol.startswith("SASL") and mechanism is None:
            msg = f"{where} needs SLIPSTREAM_KAFKA_SASL_MECHANISM (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER)"
            raise ValueError(msg)
        if mechanism is not None and not protocol.startswith("SASL"):
            msg = f"SLIPSTREAM_KAFKA_SASL_MECHANISM={mechanism!r} needs SLIPSTREAM_KAFKA_SECURITY_PROTOCOL SASL_SSL or SASL_PLAINTEXT, got {protocol!r}"  # noqa: E501
            raise ValueError(msg)
        if mechanism is not None and (self.kafka_sasl_username is None or self.kafka_sasl_password is None):
            msg = f"SLIPSTREAM_KAFKA_SASL_MECHANISM={mechanism!r} needs SLIPSTREAM_KAFKA_SASL_USERNAME and SLIPSTREAM_KAFKA_SASL_PASSWORD"  # noqa: E501
            raise ValueError(msg)
        if mechanism == "OAUTHBEARER" and not self.kafka_sasl_oauth_token_url:
            msg = "SLIPSTREAM_KAFKA_SASL_MECHANISM='OAUTHBEARER' needs SLIPSTREAM_KAFKA_SASL_OAUTH_TOKEN_URL"
            raise ValueError(msg)
        if (self.kafka_ssl_cert_file is None) != (self.kafka_ssl_key_file is None):
            msg = "SLIPSTREAM_KAFKA_SSL_CERT_FILE and SLIPSTREAM_KAFKA_SSL_KEY_FILE go together: set both or neither"
            raise ValueError(msg)
        if self.kafka_ssl_key_password is not None and self.kafka_ssl_key_file is None:
            msg = "SLIPSTREAM_KAFKA_SSL_KEY_PASSWORD needs SLIPSTREAM_KAFKA_SSL_KEY_FILE"
            raise ValueError(msg)
        files = [name for name in _FILES if getattr(self, name) is not None]
        if files and not protocol.endswith("SSL"):
            msg = f"SLIPSTREAM_{files[0].upper()} needs SLIPSTREAM_KAFKA_SECURITY_PROTOCOL SSL or SASL_SSL, got {protocol!r}"  # noqa: E501
            raise ValueError(msg)
        if self.kafka_sasl and protocol != "PLAINTEXT":
            msg = f"SLIPSTREAM_KAFKA_SASL (the local broker's own login) and {where} (a Kafka of your own): choose one"
            raise ValueError(msg)
        return self


def kafka_connection(settings: KafkaSecuritySettings, bootstrap: str) -> KafkaConnection:
    """The connection every Kafka client gets: ``bootstrap`` with the settings' security (secrets revealed here)."""
    s = settings

    def text(value: object) -> str | None:
        return None if value is None else str(value)

    return KafkaConnection(
        bootstrap,
        protocol=s.kafka_security_protocol,
        mechanism=s.kafka_sasl_mechanism,
        username=s.kafka_sasl_username,
        password=s.kafka_sasl_password.get_secret_value() if s.kafka_sasl_password is not None else None,
        ca_file=text(s.kafka_ssl_ca_file),
        cert_file=text(s.kafka_ssl_cert_file),
        key_file=text(s.kafka_ssl_key_file),
        key_password=s.kafka_ssl_key_password.get_secret_value() if s.kafka_ssl_key_password is not None else None,
        oauth_token_url=s.kafka_sasl_oauth_token_url,
        oauth_scope=s.kafka_sasl_oauth_scope,
    )
