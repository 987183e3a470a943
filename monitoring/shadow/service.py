"""One shadow worker: the challenger watcher, the handler and the transactional loop, wired.

Start-up: the changelog topic is created (as many partitions as ``predictions``), the watcher pins the end of
``model-events`` and loads the challengers the registry has now, and only then does the worker join the group: the
first prediction it reads is already compared with every challenger in force. Workers scale out by partition: each
is a member of ``group_id`` with its own ``transactional_id`` (``<group>-<worker>``); a worker restarted under its
id aborts whatever its predecessor left open.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from slipstream.monitoring.exceptions import ShadowError
from slipstream.monitoring.hosts import HostFactory
from slipstream.monitoring.shadow.challengers import (
    ChallengerLoader,
    ChallengerSet,
    ChallengerSource,
    ChallengerWatcher,
)
from slipstream.monitoring.shadow.consumer import CHANGELOG, INPUTS, PROCESSOR, JoinBound, ShadowHandler, changelog_spec
from slipstream.monitoring.transactional import ProcessorStats, TransactionalProcessor
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.exceptions import SlipstreamError
from slipstream.schemas.topics import TopicCatalog
from slipstream.schemas.transport import EventConsumer, TopicAdmin
from slipstream.schemas.transport.connection import KafkaLike


@dataclass(frozen=True, slots=True)
class ShadowSettings:
    models: tuple[str, ...] = ("fraud", "reco")
    alias_prefix: str = "challenger"
    group_id: str = "slipstream-shadow"
    worker: str = "0"
    bound: JoinBound = field(default_factory=JoinBound)
    feature_sets: Mapping[str, str] = field(default_factory=dict)  # model -> its feature-log set (default: same)
    max_batch: int = 2000
    consumer_config: Mapping[str, Any] = field(default_factory=dict)  # extra librdkafka settings of the group member

    def __post_init__(self) -> None:
        if not self.models:
            msg = "the shadow consumer needs at least one model to follow"
            raise ShadowError(msg)
        if not self.alias_prefix or self.alias_prefix == "champion":
            msg = f"challenger alias prefix {self.alias_prefix!r} would not tell challengers from the champion"
            raise ShadowError(msg)


def _prepare(bootstrap_servers: KafkaLike, contracts: Contracts) -> Contracts:
    """The contracts with the changelog declared, the changelog created with as many partitions as the inputs."""
    admin = TopicAdmin(bootstrap_servers)
    try:
        existing = admin.existing()
    except SlipstreamError as exc:
        msg = f"shadow: cannot read the broker's topics: {exc}"
        raise ShadowError(msg) from exc
    source = contracts.topic("predictions")
    if source not in existing:
        msg = f"topic {source!r} does not exist on the broker (run `slipstream topics apply`)"
        raise ShadowError(msg)
    spec = changelog_spec(existing[source])
    admin.apply(TopicCatalog(contracts.catalog.prefix, (spec,)))
    return contracts.with_topics([spec])


class ShadowWorker:
    """A member of the shadow group. :attr:`challengers` is the live set (tests wait on it)."""

    def __init__(
        self,
        bootstrap_servers: KafkaLike,
        contracts: Contracts,
        registry: ChallengerSource,
        settings: ShadowSettings = ShadowSettings(),
        *,
        host: HostFactory = TransactionalProcessor,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.settings = settings
        self.host = host  # the runtime: the Kafka runtime's processor, or another's (slipstream.processor_hosts)
        self.contracts = _prepare(bootstrap_servers, contracts)
        self.challengers = ChallengerSet()
        self.loader = ChallengerLoader(registry, settings.models, settings.alias_prefix, self.challengers)
        self.watcher = ChallengerWatcher(
            self.loader,
            lambda: EventConsumer(bootstrap_servers, contracts, ["model-events"], from_beginning=False),
        )
        self.handler = ShadowHandler(
            self.contracts, self.challengers, settings.bound, feature_sets=settings.feature_sets
        )
        self.stats = ProcessorStats()

    def run(self, stop: threading.Event, *, until_idle_s: float | None = None) -> ProcessorStats:
        """Follow the challengers, then compare until ``stop`` (or ``until_idle_s`` without input)."""
        self.watcher.start()
        try:
            prefix = self.contracts.catalog.prefix
            processor = self.host(
                self.bootstrap_servers,
                self.contracts,
                group_id=prefix + self.settings.group_id,
                inputs=INPUTS,
                handler=self.handler,
                transactional_id=f"{prefix}{self.settings.group_id}-{self.settings.worker}",
                changelog=CHANGELOG,
                processor_name=PROCESSOR,
                max_batch=self.settings.max_batch,
                config=self.settings.consumer_config,
            )
            self.stats = processor.stats
            try:
                return processor.run(stop, until_idle_s=until_idle_s)
            finally:
                processor.close()
        finally:
            self.watcher.stop()
