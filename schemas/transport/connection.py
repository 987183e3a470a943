"""How to reach Kafka: the bootstrap servers and the security settings, applied in one place.

:class:`KafkaConnection` is built once, by the composition root (``Slipstream.kafka`` in ``slipstream/app.py``), from
the settings (``SLIPSTREAM_KAFKA_*``, docs/security.md), and handed to every Kafka client Slipstream makes:
:func:`kafka_config` turns it into librdkafka settings (confluent-kafka's ``Producer``, ``Consumer``,
``AdminClient``), :meth:`KafkaConnection.faust_options` into Faust's ``broker`` and ``broker_credentials``
(aiokafka). A plain string is taken where a connection is (tests, tools): bootstrap servers over PLAINTEXT.

``str(connection)`` is the bootstrap servers, so messages that name "Kafka at ..." stay as they were; the
password and the key password are never in ``repr``/``str`` (``field(repr=False)``), and
:meth:`KafkaConnection.describe` is safe to print. No I/O here: the files are checked by the settings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError

from slipstream.schemas.exceptions import KafkaAccessError, KafkaConfigError

__all__ = [
    "PROTOCOLS",
    "SASL_MECHANISMS",
    "KafkaConnection",
    "KafkaLike",
    "as_connection",
    "close_client",
    "kafka_config",
    "list_topics",
]

_REFUSED = frozenset({KafkaError._AUTHENTICATION, KafkaError._SSL, KafkaError.SASL_AUTHENTICATION_FAILED})
PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")


@dataclass(frozen=True, slots=True)
class KafkaConnection:
    """Bootstrap servers and security of one Kafka cluster (validated by the settings, not here).

    OAUTHBEARER is librdkafka's built-in OIDC client-credentials flow: ``username`` is the client id, ``password`` the
    client secret, ``oauth_token_url`` the token endpoint (``sasl.oauthbearer.method=oidc``).
    """

    bootstrap: str
    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    key_password: str | None = field(default=None, repr=False)
    oauth_token_url: str | None = None
    oauth_scope: str | None = None

    def __str__(self) -> str:
        return self.bootstrap

    @property
    def secured(self) -> bool:
        return self.protocol != "PLAINTEXT"

    def describe(self) -> str:
        """``host:port (SASL_SSL, SCRAM-SHA-512 as slipstream)``: fit to print, never a secret."""
        if not self.secured:
            return self.bootstrap
        how = self.protocol + (f", {self.mechanism}" if self.mechanism else "")
        return f"{self.bootstrap} ({how}{f' as {self.username}' if self.username else ''})"

    def security_config(self) -> dict[str, Any]:
        """librdkafka's security settings (empty for PLAINTEXT, so a plain client's config is unchanged)."""
        if not self.secured:
            return {}
        conf: dict[str, Any] = {"security.protocol": self.protocol.lower()}
        if self.protocol.startswith("SASL"):
            conf["sasl.mechanism"] = self.mechanism
            if self.mechanism == "OAUTHBEARER":
                conf["sasl.oauthbearer.method"] = "oidc"
                conf["sasl.oauthbearer.client.id"] = self.username
                conf["sasl.oauthbearer.client.secret"] = self.password
                conf["sasl.oauthbearer.token.endpoint.url"] = self.oauth_token_url
                if self.oauth_scope:
                    conf["sasl.oauthbearer.scope"] = self.oauth_scope
            else:
                conf["sasl.username"] = self.username
                conf["sasl.password"] = self.password
        if self.protocol.endswith("SSL"):
            optional = {
                "ssl.ca.location": self.ca_file,
                "ssl.certificate.location": self.cert_file,
                "ssl.key.location": self.key_file,
                "ssl.key.password": self.key_password,
            }
            conf.update({key: value for key, value in optional.items() if value is not None})
        return conf

    def config(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """A whole librdkafka client config: bootstrap servers, security, then ``extra``. A secured one carries an
        ``error_cb`` that turns a refused login or TLS handshake into :class:`KafkaAccessError`, raised by the
        client's next ``poll``/``consume``/``flush`` (librdkafka alone retries it for ever)."""
        secured = {**self.security_config(), "error_cb": _Refusal(self)} if self.secured else {}
        return {"bootstrap.servers": self.bootstrap, **secured, **(extra or {})}

    def faust_options(self) -> dict[str, Any]:
        """Faust's ``broker`` and ``broker_credentials`` (aiokafka) for the same cluster and security.

        aiokafka takes PLAIN and SCRAM over SASL, and TLS; OAUTHBEARER would need a token provider written for it,
        so the Faust runtime refuses it (the confluent-kafka runtime takes it).
        """
        options: dict[str, Any] = {"broker": f"kafka://{self.bootstrap}"}
        if not self.secured:
            return options
        import faust  # only the Faust runtime pays for the import

        context = self._ssl_context() if self.protocol.endswith("SSL") else None
        if self.protocol == "SSL":
            options["broker_credentials"] = faust.SSLCredentials(context)
        elif self.mechanism == "OAUTHBEARER":
            msg = (
                f"the Faust runtime cannot use SASL mechanism {self.mechanism!r} (aiokafka has no OIDC client); "
                "use SLIPSTREAM_ENGINE_RUNTIME=kafka, or PLAIN/SCRAM"
            )
            raise KafkaConfigError(msg)
        else:
            options["broker_credentials"] = faust.SASLCredentials(
                username=self.username, password=self.password, mechanism=self.mechanism, ssl_context=context
            )
        return options

    def _ssl_context(self) -> Any:
        import ssl

        context = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file is not None:
            context.load_cert_chain(self.cert_file, self.key_file, password=self.key_password)
        return context


class _Refusal:
    """librdkafka's ``error_cb`` of one client: raise :class:`KafkaAccessError` on the first error no retry cures
    (authentication, TLS), once (the client's ``close()`` in a cleanup path must not raise it again); ignore the rest
    (the client reconnects by itself)."""

    __slots__ = ("_connection", "_raised")

    def __init__(self, connection: KafkaConnection) -> None:
        self._connection = connection
        self._raised = False

    def __call__(self, error: KafkaError) -> None:
        text = error.str()
        refused = error.code() in _REFUSED or "SSL handshake failed" in text or "certificate verify failed" in text
        if refused and not self._raised:
            self._raised = True
            msg = f"Kafka at {self._connection.describe()} refused the connection: {text}"
            raise KafkaAccessError(msg)


KafkaLike = KafkaConnection | str  # a plain string: bootstrap servers over PLAINTEXT


def list_topics(client: Any, timeout_s: float) -> Any:
    """``client.list_topics`` (a confluent-kafka Producer, Consumer or AdminClient) in slices of 0.5 s with the
    client's callbacks served between them: a secured connection's refused login raises :class:`KafkaAccessError`
    within a second instead of after ``timeout_s``; the last slice's ``KafkaException`` propagates."""
    from confluent_kafka import KafkaException

    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        try:
            return client.list_topics(timeout=max(0.05, min(0.5, remaining)))
        except KafkaException:
            client.poll(0)  # the error_cb of a secured connection raises here
            if remaining <= 0.5:
                raise


def close_client(client: Any, *, flush_s: float | None = None, discard: bool = False) -> None:
    """Close a confluent-kafka client, whatever its callbacks raise first: a producer drops what is queued
    (``discard``), then sends for up to ``flush_s``. A secured client's ``error_cb`` raises a refused login at its
    first poll, which may be this flush: the client is closed all the same, then the error propagates (a client left
    open would go on reconnecting, and logging, until the process exits)."""
    try:
        if discard:
            client.purge()
        if flush_s is not None:
            client.flush(flush_s)
    finally:
        client.close()


def as_connection(kafka: KafkaLike) -> KafkaConnection:
    return kafka if isinstance(kafka, KafkaConnection) else KafkaConnection(kafka)


def kafka_config(kafka: KafkaLike, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The librdkafka config of every Kafka client Slipstream makes: ``{**kafka_config(kafka), "group.id": ...}``
    (tests/unit/test_kafka_clients.py fails when a client is built without it)."""
    return as_connection(kafka).config(extra)
