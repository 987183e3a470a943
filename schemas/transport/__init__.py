"""Typed Kafka clients that speak the contracts: a keyed idempotent producer, a decoding consumer, topic admin."""

from schemas.transport.admin import TopicAdmin, TopicChange
from schemas.transport.consumer import ConsumedBatch, ConsumedEvent, EventConsumer
from schemas.transport.producer import EventProducer

__all__ = ["ConsumedBatch", "ConsumedEvent", "EventConsumer", "EventProducer", "TopicAdmin", "TopicChange"]
