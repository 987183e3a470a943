"""The online feature engine: exact event-time windows from Kafka into Feast's Redis layout and the feature log."""

from slipstream.streams.engine.processor import StageOutput, StageProcessor
from slipstream.streams.engine.topology import StageSpec, Topology, topology_for

__all__ = ["StageOutput", "StageProcessor", "StageSpec", "Topology", "topology_for"]
