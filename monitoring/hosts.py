"""What a runtime that hosts a monitoring :class:`~slipstream.monitoring.transactional.Handler` offers its caller.

Two hosts exist, chosen by the composition root (``slipstream.processor_hosts``): ``kafka``,
:class:`~slipstream.monitoring.transactional.TransactionalProcessor` (confluent-kafka), and ``faust``,
``slipstream.faust_processor.FaustProcessor`` (a Faust app: it stands on ``streams/``, which ``monitoring/`` never
imports). Both take :class:`TransactionalProcessor`'s constructor arguments."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from slipstream.monitoring.transactional import ProcessorStats


class Host(Protocol):
    """A running processor: :meth:`run` until stopped or idle, then :meth:`close`."""

    stats: ProcessorStats

    def run(self, stop: threading.Event, *, until_idle_s: float | None = None) -> ProcessorStats: ...

    def close(self) -> None: ...


HostFactory = Callable[..., Host]

__all__ = ["Host", "HostFactory"]
