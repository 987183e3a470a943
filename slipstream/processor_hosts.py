"""The host of a monitoring processor by its runtime's short key (``kafka`` | ``faust``, the feature engine's
``SLIPSTREAM_ENGINE_RUNTIME``): same handler, topics, changelog and exactly-once contract on both."""

from __future__ import annotations

from slipstream.monitoring.exceptions import MonitoringError
from slipstream.monitoring.hosts import HostFactory
from slipstream.monitoring.transactional import TransactionalProcessor
from slipstream.streams.engine.settings import RUNTIMES


def hosting(runtime: str) -> HostFactory:
    """``kafka``: :class:`TransactionalProcessor`; ``faust``: :class:`~slipstream.faust_processor.FaustProcessor`
    (Faust loads only when chosen)."""
    if runtime == "kafka":
        return TransactionalProcessor
    if runtime == "faust":
        from slipstream.faust_processor import FaustProcessor

        return FaustProcessor
    msg = f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}"
    raise MonitoringError(msg)


__all__ = ["hosting"]
