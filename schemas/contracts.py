"""The contract of every topic in one object: full names, key extraction, and the value serde."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import Any

from slipstream.schemas.base import Framing
from slipstream.schemas.exceptions import SchemaNotFoundError, SerializationError
from slipstream.schemas.framing import ConfluentFraming, SingleObjectFraming
from slipstream.schemas.registry import SchemaRegistry
from slipstream.schemas.serde import AvroSerde
from slipstream.schemas.topics import TopicCatalog, TopicSpec
from slipstream.schemas.validation import validator_for


class Contracts:
    """Topic catalog + schema registry + wire framing; hands out one serde per topic."""

    def __init__(self, catalog: TopicCatalog, registry: SchemaRegistry, framing: Framing) -> None:
        self.catalog = catalog
        self.registry = registry
        self.framing = framing
        self._serdes: dict[str, AvroSerde] = {}

    @classmethod
    def default(cls, prefix: str = "", schema_registry_url: str | None = None) -> Contracts:
        """This repo's schemas; single-object encoding, or the Confluent wire format with a registry URL."""
        registry = SchemaRegistry.load()
        framing: Framing = (
            ConfluentFraming.from_url(registry, schema_registry_url)
            if schema_registry_url
            else SingleObjectFraming(registry)
        )
        return cls(TopicCatalog(prefix), registry, framing)

    def with_topics(self, specs: Iterable[TopicSpec]) -> Contracts:
        """The same contracts over a catalog that also declares ``specs`` (a feature engine's internal topics)."""
        catalog = self.catalog.with_specs(specs)
        return self if catalog == self.catalog else Contracts(catalog, self.registry, self.framing)

    def spec(self, topic: str) -> TopicSpec:
        return self.catalog.spec(topic)

    def topic(self, logical_name: str) -> str:
        return self.catalog.name(logical_name)

    def serde(self, topic: str) -> AvroSerde:
        spec = self.catalog.spec(topic)
        serde = self._serdes.get(spec.name)
        if serde is None:
            full = self.catalog.prefix + spec.name
            if spec.value_schema is None:
                msg = f"topic {full!r} is internal to the feature engine and has no Avro contract"
                raise SchemaNotFoundError(msg)
            schema = self.registry.get(spec.value_schema)
            serde = AvroSerde(full, schema, self.framing, validator_for(spec.value_schema))
            self._serdes[spec.name] = serde
        return serde

    def key(self, topic: str, record: Mapping[str, Any]) -> bytes:
        """The record key: the text of the entity field declared for the topic."""
        field = self.catalog.spec(topic).key_field
        value = record.get(field)
        if value is None:
            msg = f"record for topic {topic!r} has no key field {field!r}"
            raise SerializationError(msg)
        return str(value).encode()

    @cached_property
    def full_topic_names(self) -> dict[str, str]:
        """Full name -> logical name."""
        return {self.catalog.prefix + spec.name: spec.name for spec in self.catalog}
