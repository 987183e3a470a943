"""Typed Kafka clients that speak the contracts: a keyed idempotent producer, a decoding consumer, topic admin."""

from slipstream.schemas.transport.admin import TopicAdmin, TopicChange
from slipstream.schemas.transport.consumer import ConsumedBatch, ConsumedEvent, EventConsumer
from slipstream.schemas.transport.producer import EventProducer

__all__ = ["ConsumedBatch", "ConsumedEvent", "EventConsumer", "EventProducer", "TopicAdmin", "TopicChange"]
