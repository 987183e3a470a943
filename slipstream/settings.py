"""One frozen, validated settings object, read once at start-up by the composition root.

Every field reads ``SLIPSTREAM_<FIELD>`` from the environment (or a ``.env`` file in the working directory).
``KAFKA_BOOTSTRAP_SERVERS`` and ``REDIS_URL`` are honoured too: when set, Slipstream uses those services
instead of starting its own.

Credentials are :class:`~pydantic.SecretStr` (``redis_url``, ``schema_registry_url``, ``mlflow_tracking_uri``, the
scorer's tokens, Kafka's SASL and key passwords: ``slipstream/kafka_settings.py``): the settings' repr,
``model_dump`` and ``model_dump_json`` show ``**********``, an invalid value is quoted masked, and only the
composition root reveals them, to the client that needs them (docs/security.md).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from slipstream.exceptions import ConfigError
from slipstream.infra.config import MAX_BROKERS
from slipstream.kafka_settings import KAFKA_SECRETS, KafkaSecuritySettings
from slipstream.schemas.secrets import MASK, mask_url

_HEAP = re.compile(r"^\d+[kKmMgG]$")
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")
_TOKEN = re.compile(r"^[A-Za-z0-9._~+/-]+=*$")  # RFC 6750's b64token: what a Bearer header can carry
MIN_TOKEN_CHARS = 16
URL_SECRETS = frozenset({"redis_url", "schema_registry_url", "mlflow_tracking_uri"})  # quoted masked
SECRETS = URL_SECRETS | {"scorer_tokens"} | KAFKA_SECRETS  # never quoted


class Settings(KafkaSecuritySettings):  # + the SLIPSTREAM_KAFKA_* security fields (slipstream/kafka_settings.py)
    model_config = SettingsConfigDict(
        env_prefix="SLIPSTREAM_",
        env_file=".env",
        extra="forbid",
        frozen=True,
        validate_default=True,
        hide_input_in_errors=True,  # a chained ValidationError never quotes a secret; load_settings quotes the rest
    )

    state_dir: Path = Field(Path(".slipstream"), description="State, logs and data of the local platform.")
    cache_dir: Path = Field(Path.home() / ".cache" / "slipstream", description="Downloaded Kafka jars.")
    backend: Literal["auto", "local", "docker"] = Field(
        "auto", description="How to run Kafka and Redis: docker when an engine answers (auto), else local."
    )
    kafka_version: str = Field("4.3.1", description="Apache Kafka version for the local broker (>= 4.0.1).")
    kafka_port: int = Field(9092, ge=1, le=65535)
    controller_port: int = Field(9093, ge=1, le=65535)
    kafka_heap: str = Field("512m", description="JVM heap of the local broker.")
    kafka_brokers: int = Field(
        1,
        description=(
            "Kafka nodes of the local platform: 1, or 3..9 for a KRaft cluster (local backend; node n on "
            "kafka_port+2*(n-1) and controller_port+2*(n-1); topics get 3 replicas and min.insync.replicas 2)."
        ),
    )
    redis_port: int = Field(6379, ge=1, le=65535)
    redis_cluster: bool = Field(
        False,
        description=(
            "Run the local platform's Redis as a Redis Cluster of three masters (local backend) on "
            "redis_cluster_port+0..2 (cluster buses +10000); its URL is then redis+cluster://127.0.0.1:P,... ."
        ),
    )
    redis_cluster_port: int = Field(7100, ge=1, le=55533, description="First port of the local Redis Cluster.")
    redis_tls: bool = Field(
        False,
        description=(
            "Run the local platform's Redis with TLS only (on redis_port) and an ACL login: a private CA, its "
            "certificate and a random password made once in <state_dir>/redis/tls (local backend, one server)."
        ),
    )
    redis_tls_ca_file: Path | None = Field(
        None,
        description="CA certificate(s) that Redis's TLS certificate is verified against (default: the system's CAs).",
    )
    redis_tls_cert_file: Path | None = Field(
        None, description="Client certificate for a Redis that requires one (tls-auth-clients yes); with the key."
    )
    redis_tls_key_file: Path | None = Field(None, description="The client certificate's private key.")
    startup_timeout_s: float = Field(120.0, gt=0)
    kafka_bootstrap_servers: str | None = Field(
        None,
        validation_alias=AliasChoices("SLIPSTREAM_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"),
        description="Use this Kafka instead of starting one.",
    )
    redis_url: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("SLIPSTREAM_REDIS_URL", "REDIS_URL"),
        description=(
            "Use this Redis instead of starting one: redis://[user:password@]host:port/db (rediss:// with TLS), or "
            "a Redis Cluster as redis+cluster://host:port[,host:port...] (rediss+cluster://; any masters, the rest "
            "are discovered). The scheme chooses the client, not a probe of the server. A secret: printed masked."
        ),
    )
    topic_prefix: str = Field("", description="Namespace prepended to every topic name.")
    schema_registry_url: SecretStr | None = Field(
        None,
        description=(
            "Confluent-compatible schema registry (https://key:secret@host allowed; a secret, printed masked); "
            "default is Avro single-object encoding."
        ),
    )
    producer_linger_ms: float = Field(1.0, ge=0, le=1000, description="linger.ms of Slipstream's producers.")
    feast_project: str = Field("slipstream", description="Feast project (part of every online-store key).")
    feast_repo_dir: Path = Field(Path(".slipstream/feast"), description="Generated Feast repository.")
    offline_dir: Path = Field(Path(".slipstream/offline"), description="Offline feature tables (Feast file sources).")
    mlflow_tracking_uri: SecretStr | None = Field(
        None,
        description="MLflow tracking/registry URI (a secret, printed masked); default sqlite:///<state_dir>/mlflow.db.",
    )
    lateness_s: float = Field(2.0, ge=0, description="Allowed lateness of events (out-of-order tolerance), seconds.")
    engine_nice: int = Field(
        0,
        ge=0,
        le=19,
        description=(
            "Nice value of the feature engine's stage processes. Co-located with the scorer (the demo, the end-to-end "
            "benchmark), 10 lets the scorer and the broker take the CPU first; the engine catches up when it is free."
        ),
    )
    engine_runtime: Literal["kafka", "faust"] = Field(
        "kafka",
        description=(
            "What hosts the feature engine's stages: kafka (a confluent-kafka consumer-group member per stage worker) "
            "or faust (a Faust app per stage worker). Same protocol, same results; see docs/architecture.md."
        ),
    )
    engine_idle_class: bool = Field(
        True,
        description=(
            "Co-located with the scorer, run the engine's stage processes in a session of their own (autogroup nice "
            "19) and Linux's idle scheduling class: they use only CPU nothing else wants. Under saturation the "
            "engine then falls behind (the Kafka scorer stays exact while the lag is under "
            "SLIPSTREAM_RECENT_HORIZON_S); false keeps the nice value only. The drill, which waits for the "
            "engine, always keeps the nice value only."
        ),
    )
    worker_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description=(
            "This engine worker's static group member id: restarted under the same id, it takes its partitions back "
            "without a rebalance. Every worker of a stage needs its own; unset, workers join as dynamic members."
        ),
    )
    serve_host: str = Field("127.0.0.1", description="Address `slipstream serve` listens on.")
    serve_port: int = Field(8000, ge=1, le=65535, description="Port of `slipstream serve`.")
    metrics_host: str = Field(
        "127.0.0.1",
        description=(
            "Address the stream processes serve Prometheus /metrics on (--metrics-port of features run, "
            "score-stream, shadow, outcomes, drift, loop and monitor); 0.0.0.0 to be scraped from another host."
        ),
    )
    metrics_lag_interval_s: float = Field(
        15.0, gt=0, description="How often a process with --metrics-port reads its consumer groups' lag from Kafka."
    )
    http_max_body_bytes: int = Field(
        64 * 1024, gt=0, description="Largest request body `slipstream serve` reads; a larger one gets 413."
    )
    scorer_tokens: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        (),
        description=(
            "Bearer tokens `slipstream serve` accepts on /v1/* (comma-separated; several at once so that a token "
            f"can be rotated without downtime; each {MIN_TOKEN_CHARS}+ characters of A-Z a-z 0-9 . _ ~ + / - and "
            "trailing =). Empty, with no SLIPSTREAM_SCORER_TOKENS_FILE: the scorer is open (and says so)."
        ),
    )
    scorer_tokens_file: Path | None = Field(
        None,
        description=(
            "A file of scorer bearer tokens, one a line (blank lines and # comments skipped), read at start-up: a "
            "mounted Kubernetes or Docker secret keeps the tokens out of the process environment. Not with "
            "SLIPSTREAM_SCORER_TOKENS."
        ),
    )
    fraud_model: str = Field("fraud", description="Registered model the fraud endpoint serves (its champion).")
    reco_model: str = Field("reco", description="Registered model the recommendations endpoint serves.")
    redis_timeout_s: float = Field(
        0.25, gt=0, le=30, description="The scorer's Redis socket timeout: past it a request gets 503, not a wait."
    )
    recent_horizon_s: float = Field(
        30.0, gt=0, description="How long score-stream remembers scored events the online store may not show yet."
    )
    recent_states: int = Field(
        20_000,
        ge=1,
        description="How many entity states score-stream keeps decoded, reused while the store holds the same bytes.",
    )
    label_horizon_days: float = Field(
        30.0,
        gt=0,
        le=3650,
        description=(
            "How long, in event time, the label joiner waits for a prediction's label (and a label's prediction); "
            "past the horizon plus SLIPSTREAM_LABEL_GRACE_DAYS an unlabelled prediction is written as such."
        ),
    )
    label_grace_days: float = Field(
        1.0, ge=0, le=365, description="Extra event time the label joiner waits past the horizon (late records)."
    )
    challenger_alias_prefix: str = Field(
        "challenger",
        pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$",
        description="MLflow aliases starting with this make a version a challenger the shadow consumer scores.",
    )

    _file_tokens: tuple[SecretStr, ...] = PrivateAttr(default=())

    @property
    def accepted_scorer_tokens(self) -> tuple[SecretStr, ...]:
        """The bearer tokens the HTTP scorer accepts: ``scorer_tokens``, or those of ``scorer_tokens_file``; empty
        when the scorer is open."""
        return self.scorer_tokens or self._file_tokens

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(_REDIS_SCHEMES):
            msg = f"must start with {', '.join(_REDIS_SCHEMES)}"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _redis_tls_files(self) -> Settings:
        files = (self.redis_tls_ca_file, self.redis_tls_cert_file, self.redis_tls_key_file)
        if (self.redis_tls_cert_file is None) != (self.redis_tls_key_file is None):
            msg = "SLIPSTREAM_REDIS_TLS_CERT_FILE and SLIPSTREAM_REDIS_TLS_KEY_FILE go together: set both or neither"
            raise ValueError(msg)
        url = self.redis_url.get_secret_value() if self.redis_url is not None else None
        if any(f is not None for f in files) and (url is None or not url.startswith("rediss")):
            msg = "SLIPSTREAM_REDIS_TLS_*_FILE need a TLS Redis: SLIPSTREAM_REDIS_URL (or REDIS_URL) starting rediss://"
            raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _kafka_security_needs_kafka(self) -> Settings:
        if self.kafka_security_protocol != "PLAINTEXT" and self.kafka_bootstrap_servers is None:
            msg = (
                f"SLIPSTREAM_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol!r} is for a Kafka of your own: set "
                "SLIPSTREAM_KAFKA_BOOTSTRAP_SERVERS too (the local platform's broker takes SLIPSTREAM_KAFKA_SASL)"
            )
            raise ValueError(msg)
        if self.kafka_sasl_mechanism == "OAUTHBEARER" and self.engine_runtime == "faust":
            msg = "SLIPSTREAM_KAFKA_SASL_MECHANISM='OAUTHBEARER' needs SLIPSTREAM_ENGINE_RUNTIME=kafka (not faust)"
            raise ValueError(msg)
        return self

    @field_validator("scorer_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: Any) -> Any:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):  # the variable's form: comma-separated
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("scorer_tokens")
    @classmethod
    def _tokens(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        check_tokens(value)
        return value

    @model_validator(mode="after")
    def _read_token_file(self) -> Settings:
        path = self.scorer_tokens_file
        if path is None:
            return self
        if self.scorer_tokens:
            msg = "SLIPSTREAM_SCORER_TOKENS and SLIPSTREAM_SCORER_TOKENS_FILE are both set: choose one"
            raise ValueError(msg)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            msg = f"SLIPSTREAM_SCORER_TOKENS_FILE={str(path)!r} cannot be read: {type(exc).__name__}"
            raise ValueError(msg) from None  # the decoder's message quotes bytes of the file
        tokens = tuple(SecretStr(line.strip()) for line in lines if line.strip() and not line.lstrip().startswith("#"))
        if not tokens:
            msg = f"SLIPSTREAM_SCORER_TOKENS_FILE={str(path)!r} holds no token"
            raise ValueError(msg)
        check_tokens(tokens, f"SLIPSTREAM_SCORER_TOKENS_FILE={str(path)!r}: ")
        self._file_tokens = tokens
        return self

    @field_validator("kafka_heap")
    @classmethod
    def _heap(cls, value: str) -> str:
        if not _HEAP.match(value):
            msg = f"kafka_heap must look like 512m or 1g, got {value!r}"
            raise ValueError(msg)
        return value

    @field_validator("kafka_brokers")
    @classmethod
    def _brokers(cls, value: int) -> int:
        if value != 1 and not 3 <= value <= MAX_BROKERS:
            msg = f"kafka_brokers must be 1 or 3..{MAX_BROKERS} (a KRaft quorum of 2 cannot lose a node), got {value!r}"
            raise ValueError(msg)
        return value

    @field_validator("kafka_version")
    @classmethod
    def _version(cls, value: str) -> str:
        match = _VERSION.match(value)
        if match is None or tuple(int(x) for x in match.groups()) < (4, 0, 1):
            msg = f"kafka_version must be an Apache Kafka release >= 4.0.1 (X.Y.Z), got {value!r}"
            raise ValueError(msg)
        return value


def check_tokens(tokens: tuple[SecretStr, ...], where: str = "") -> None:
    """Refuse a token a client could not send or an attacker could guess; the message numbers it, never quotes it."""
    for number, token in enumerate(tokens, 1):
        text = token.get_secret_value()
        if len(text) < MIN_TOKEN_CHARS or not _TOKEN.match(text):
            msg = (
                f"{where}token {number} of {len(tokens)} must be at least {MIN_TOKEN_CHARS} characters of "
                "A-Z a-z 0-9 . _ ~ + / - (and trailing =), e.g. from `python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'`"
            )
            raise ValueError(msg)


def _shown(field: str, value: object) -> str:
    """An invalid input as an error may quote it: a secret URL masked, a token never."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if field in URL_SECRETS:
        return repr(mask_url(str(value)))
    if field in SECRETS:
        return repr(MASK)
    return repr(value)


def load_settings(**overrides: object) -> Settings:
    """Read the settings once; an invalid value raises :class:`ConfigError` naming the variable (a secret's value
    masked)."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]  # overrides are validated by pydantic
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"]).lower().removeprefix("slipstream_")
            if not field:  # a check across fields: its message names the variables
                problems.append(str(error["msg"]).removeprefix("Value error, "))
                continue
            name = field.split(".")[0]
            problems.append(f"SLIPSTREAM_{field.upper()}={_shown(name, error.get('input'))}: {error['msg']}")
        msg = "invalid settings: " + "; ".join(problems)
        raise ConfigError(msg) from exc
