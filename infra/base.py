"""Interfaces of the platform: what a launcher does and what it reports."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class ServiceStatus:
    """One service as seen right now.

    ``address`` is what a client connects to (``127.0.0.1:9092`` for Kafka, ``redis://127.0.0.1:6379/0``
    for Redis); ``pid`` is set only for a process this platform started locally; ``detail`` says why a
    service is down or how it was found.
    """

    name: str
    up: bool
    address: str
    version: str | None
    backend: str
    pid: int | None
    detail: str = ""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@runtime_checkable
class ServiceLauncher(Protocol):
    """Starts, stops and inspects one service. ``up()`` is idempotent: a running service is left alone."""

    def up(self) -> ServiceStatus: ...

    def down(self) -> None: ...

    def status(self) -> ServiceStatus: ...
