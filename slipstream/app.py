"""The composition root: settings -> platform -> contracts -> Kafka clients. The only place that wires parts."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

from slipstream.features.definitions import feature_sets
from slipstream.features.feast_repo import FeastRepoConfig
from slipstream.features.redis_client import with_tls_files
from slipstream.infra import kafka_sasl
from slipstream.infra.config import PlatformConfig
from slipstream.infra.platform import Platform
from slipstream.infra.redis_tls import local_tls_url
from slipstream.kafka_settings import kafka_connection
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.topics import TopicCatalog
from slipstream.schemas.transport import EventConsumer, EventProducer, TopicAdmin, TopicChange
from slipstream.schemas.transport.connection import KafkaConnection
from slipstream.settings import Settings
from slipstream.streams.engine.runner import COLOCATED_NICE, EngineSettings
from slipstream.streams.engine.topology import engine_topics

if TYPE_CHECKING:
    from slipstream.models.registry import ModelRegistry
    from slipstream.serving.http import FraudFastPath
    from slipstream.serving.service import ScoringService


class Slipstream:
    """Everything a command needs, built lazily from one :class:`Settings`."""

    def __init__(self, settings: Settings, progress: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self._progress = progress

    @cached_property
    def platform_config(self) -> PlatformConfig:
        s = self.settings
        return PlatformConfig(
            state_dir=s.state_dir,
            cache_dir=s.cache_dir,
            backend=s.backend,
            kafka_version=s.kafka_version,
            kafka_port=s.kafka_port,
            controller_port=s.controller_port,
            kafka_heap=s.kafka_heap,
            brokers=s.kafka_brokers,
            redis_port=s.redis_port,
            redis_cluster=s.redis_cluster,
            redis_cluster_port=s.redis_cluster_port,
            redis_tls=s.redis_tls,
            kafka_sasl=s.kafka_sasl,
            startup_timeout_s=s.startup_timeout_s,
        )

    @cached_property
    def platform(self) -> Platform:
        return Platform(self.platform_config, progress=self._progress)

    @property
    def external(self) -> bool:
        """Kafka and Redis are given from outside (environment), not run by Slipstream."""
        return self.settings.kafka_bootstrap_servers is not None

    @property
    def bootstrap_servers(self) -> str:
        """For messages and the environment of child processes; clients take :attr:`kafka`."""
        return self.settings.kafka_bootstrap_servers or self.platform_config.bootstrap_servers

    @property
    def kafka(self) -> KafkaConnection:
        """The one connection every Kafka client gets (``kafka_config(app.kafka, ...)``): the bootstrap servers with
        the ``SLIPSTREAM_KAFKA_*`` security settings, or the local platform's broker (with its SASL_SSL login under
        ``kafka_sasl``). Its password is revealed here, never printed (``repr`` omits it)."""
        if self.settings.kafka_bootstrap_servers is None and self.platform_config.kafka_sasl:
            files = kafka_sasl.sasl_files(self.platform_config)
            return KafkaConnection(
                self.bootstrap_servers,
                protocol="SASL_SSL",
                mechanism=kafka_sasl.MECHANISM,
                username=kafka_sasl.USER,
                password=files.password(),
                ca_file=str(files.ca_cert),
            )
        return kafka_connection(self.settings, self.bootstrap_servers)

    def kafka_environment(self) -> dict[str, str]:
        """The variables that give a child process this process's Kafka, security included (the password too: the
        environment is how children get their settings, as ``REDIS_URL`` carries Redis's); the local platform's SASL
        login is handed over as explicit settings, so the child never starts a platform."""
        k = self.kafka
        values = {
            "SECURITY_PROTOCOL": k.protocol,
            "SASL_MECHANISM": k.mechanism,
            "SASL_USERNAME": k.username,
            "SASL_PASSWORD": k.password,
            "SASL_OAUTH_TOKEN_URL": k.oauth_token_url,
            "SASL_OAUTH_SCOPE": k.oauth_scope,
            "SSL_CA_FILE": k.ca_file,
            "SSL_CERT_FILE": k.cert_file,
            "SSL_KEY_FILE": k.key_file,
            "SSL_KEY_PASSWORD": k.key_password,
        }
        env = {f"SLIPSTREAM_KAFKA_{name}": value for name, value in values.items() if value is not None}
        return {"KAFKA_BOOTSTRAP_SERVERS": k.bootstrap, "SLIPSTREAM_KAFKA_SASL": "false", **env}

    # The settings' secrets are revealed here, the one place that hands them to the clients that use them; print
    # these only through slipstream.schemas.secrets.mask_url.
    @property
    def redis_url(self) -> str:
        """The one URL every Redis client gets (the engine's, the scorer's, Feast's): ``redis_url`` with the
        ``redis_tls_*_file`` settings as its TLS query parameters, else the local platform's (with its TLS login)."""
        s = self.settings
        if s.redis_url is None:
            if self.platform_config.redis_tls:
                return local_tls_url(self.platform_config)
            return self.platform_config.redis_url
        files = (s.redis_tls_ca_file, s.redis_tls_cert_file, s.redis_tls_key_file)
        return with_tls_files(s.redis_url.get_secret_value(), *(str(f) if f is not None else None for f in files))

    @property
    def schema_registry_url(self) -> str | None:
        given = self.settings.schema_registry_url
        return given.get_secret_value() if given is not None else None

    @property
    def mlflow_tracking_uri(self) -> str:
        """``SLIPSTREAM_MLFLOW_TRACKING_URI``, else SQLite in the state dir."""
        from slipstream.models.registry import default_tracking_uri

        given = self.settings.mlflow_tracking_uri
        return given.get_secret_value() if given is not None else default_tracking_uri(self.settings.state_dir)

    @cached_property
    def contracts(self) -> Contracts:
        """Every topic a deployment uses: the contract topics and the internal topics of every feature set."""
        base = Contracts.default(self.settings.topic_prefix, self.schema_registry_url)
        return base.with_topics(engine_topics(feature_sets().values()))

    def with_prefix(self, prefix: str) -> Contracts:
        catalog = TopicCatalog(prefix, self.contracts.catalog.specs)
        return Contracts(catalog, self.contracts.registry, self.contracts.framing)

    def feast_config(self, project: str | None = None) -> FeastRepoConfig:
        s = self.settings
        return FeastRepoConfig(
            project=project or s.feast_project,
            repo_dir=s.feast_repo_dir,
            offline_dir=s.offline_dir,
            redis_url=self.redis_url,
        )

    def engine_settings(
        self,
        *,
        project: str | None = None,
        lateness_s: float | None = None,
        colocated: bool = False,
        paced: bool = False,
    ) -> EngineSettings:
        """The engine's settings; ``colocated``: it shares the machine with a scorer (demo, benchmarks), so its
        stages run at least at :data:`~streams.engine.runner.COLOCATED_NICE`, and in Linux's idle scheduling class
        unless ``engine_idle_class`` is off. ``paced``: the caller waits for the engine's progress (the drill paces
        its producer by it), so the stages never enter the idle class: there they get no CPU at all while any other
        process is runnable, and the caller would wait for ever on a busy machine."""
        s = self.settings
        return EngineSettings(
            self.kafka,
            self.redis_url,
            project=project or s.feast_project,
            lateness_s=s.lateness_s if lateness_s is None else lateness_s,
            nice=max(s.engine_nice, COLOCATED_NICE) if colocated else s.engine_nice,
            idle_class=colocated and s.engine_idle_class and not paced,
            worker_id=s.worker_id,
            schema_registry_url=self.schema_registry_url,
        )

    def ensure_platform(self) -> None:
        """Start Kafka and Redis unless they are given from outside; apply the topics."""
        if not self.external:
            self.platform.up()
        self.apply_topics()

    def topic_admin(self) -> TopicAdmin:
        return TopicAdmin(self.kafka)

    def apply_topics(self, contracts: Contracts | None = None) -> list[TopicChange]:
        return self.topic_admin().apply((contracts or self.contracts).catalog)

    def producer(
        self,
        *,
        linger_ms: float | None = None,
        contracts: Contracts | None = None,
        client_id: str = "slipstream-producer",
        **config: Any,
    ) -> EventProducer:
        """An Avro producer; ``config`` holds extra librdkafka settings (dotted names: pass a dict with ``**``)."""
        return EventProducer(
            self.kafka,
            contracts or self.contracts,
            linger_ms=self.settings.producer_linger_ms if linger_ms is None else linger_ms,
            client_id=client_id,
            config=config,
        )

    def consumer(
        self,
        topics: Iterable[str],
        *,
        group_id: str | None = None,
        from_beginning: bool = True,
        dead_letters: EventProducer | None = None,
        processor: str = "consumer",
        contracts: Contracts | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> EventConsumer:
        """A decoding consumer; ``config`` holds extra librdkafka settings (e.g. ``isolation.level``)."""
        return EventConsumer(
            self.kafka,
            contracts or self.contracts,
            topics,
            group_id=group_id,
            from_beginning=from_beginning,
            dead_letters=dead_letters,
            processor=processor,
            config=config,
        )

    # ------------------------------------------------------------------ models and serving
    @cached_property
    def model_registry(self) -> ModelRegistry:
        """The MLflow registry: ``SLIPSTREAM_MLFLOW_TRACKING_URI``, else SQLite and artifacts in the state dir."""
        from slipstream.models.registry import ModelRegistry

        state_dir = self.settings.state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        return ModelRegistry(self.mlflow_tracking_uri, state_dir / "mlruns")

    def scoring_service(
        self,
        *,
        contracts: Contracts | None = None,
        project: str | None = None,
        remember_recent: bool = False,
        reco: bool = True,
    ) -> ScoringService:
        """A scorer process's parts: state store, scorers, model slots, the model-events watcher and metrics.

        ``remember_recent``: add the events this worker scored that the store does not show yet (the Kafka path).
        """
        from slipstream.features.definitions import FRAUD, RECO
        from slipstream.features.feast_repo import view_layouts
        from slipstream.serving.fraud import FraudScorer
        from slipstream.serving.metrics import ScorerMetrics
        from slipstream.serving.model_slot import ModelSlot
        from slipstream.serving.model_watcher import ModelWatcher
        from slipstream.serving.online_state import RedisStateStore, scorer_client
        from slipstream.serving.recent import RecentEvents
        from slipstream.serving.service import ScoringService

        s = self.settings
        layouts = view_layouts([FRAUD, RECO], project or s.feast_project)
        client = scorer_client(self.redis_url, s.redis_timeout_s)  # one connection pool for every scorer read
        store = RedisStateStore(client, layouts.values())
        metrics = ScorerMetrics()
        fraud_slot = ModelSlot(
            s.fraud_model, FRAUD.feature_names, on_swap=lambda r, m: metrics.record_swap("fraud", r, m)
        )
        recent = RecentEvents(s.recent_horizon_s, max_states=s.recent_states) if remember_recent else None
        service = ScoringService(store, FraudScorer(store, fraud_slot, FRAUD, recent=recent), fraud_slot, metrics)
        slots = {s.fraud_model: fraud_slot}
        if reco:
            self._add_reco(service, client, layouts, slots)
        events_contracts = contracts or self.contracts
        service.watcher = ModelWatcher(
            self.model_registry,
            slots,
            lambda: self.consumer(["model-events"], from_beginning=False, contracts=events_contracts),
        )
        return service

    def http_app(self, service: ScoringService | None = None) -> FraudFastPath:
        """The HTTP scorer's ASGI app over ``service`` (default: a new :meth:`scoring_service`): the body cap, and
        bearer-token authentication on ``/v1/*`` when tokens are set (``SLIPSTREAM_SCORER_TOKENS`` or
        ``SLIPSTREAM_SCORER_TOKENS_FILE``); open, and logged so, when none is."""
        from slipstream.serving.auth import BearerAuth
        from slipstream.serving.http import create_app

        s = self.settings
        tokens = s.accepted_scorer_tokens
        return create_app(
            service or self.scoring_service(),
            max_body_bytes=s.http_max_body_bytes,
            auth=BearerAuth(tokens) if tokens else None,
        )

    def _add_reco(self, service: ScoringService, client: Any, layouts: Any, slots: dict[str, Any]) -> None:
        """The recommendations ranker: its model slot (the champion of ``settings.reco_model``, checked against the
        features the ranker builds), its Redis reader of the reco views, and the slot handed to the watcher."""
        from slipstream.features.definitions.reco import FEATURES
        from slipstream.serving.model_slot import ModelSlot
        from slipstream.serving.reco import RecoRowReader, RecoScorer

        s = self.settings
        metrics = service.metrics
        slot = ModelSlot(s.reco_model, FEATURES, kind="ranking", on_swap=lambda r, m: metrics.record_swap("reco", r, m))
        reader = RecoRowReader(client, layouts)
        service.reco = RecoScorer(reader, slot)
        service.reco_slot = slot
        slots[s.reco_model] = slot
