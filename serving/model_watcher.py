"""Follows ``model-events`` and swaps the serving model when a champion changes, with no downtime.

Start-up order matters: the watcher pins the end of ``model-events`` *before* it loads the current champion from
the registry, so a promotion made in between is still seen. On a ``PROMOTED`` or ``ROLLED_BACK`` event for the
champion alias of a model it serves, it loads that exact version (checksum verified), and hands it to the
:class:`~serving.model_slot.ModelSlot`, which checks, warms and installs it — or refuses it and keeps serving.
Loading runs on the watcher's own thread; requests never wait for it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from slipstream.models.exceptions import ModelError
from slipstream.models.registry import CHAMPION, LoadedModel
from slipstream.schemas.exceptions import SlipstreamError
from slipstream.schemas.transport import EventConsumer
from slipstream.serving.exceptions import ModelRefusedError
from slipstream.serving.model_slot import ModelSlot

log = logging.getLogger(__name__)
SWAP_ACTIONS = frozenset({"PROMOTED", "ROLLED_BACK"})


class ModelSource(Protocol):
    """What the watcher needs of the registry (:class:`slipstream.models.registry.ModelRegistry`)."""

    def alias_version(self, name: str, alias: str) -> str | None: ...

    def load_version(self, name: str, version: str | int) -> LoadedModel: ...


class ModelWatcher:
    def __init__(
        self,
        registry: ModelSource,
        slots: Mapping[str, ModelSlot],
        events: Callable[[], EventConsumer],
        *,
        poll_s: float = 0.2,
    ) -> None:
        self.registry = registry
        self.slots = dict(slots)
        self._events_factory = events
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: EventConsumer | None = None
        self.errors: list[str] = []

    def start(self) -> None:
        """Pin the event stream's end, load every champion there is, then follow the stream on a thread."""
        self._consumer = self._events_factory()
        for name in self.slots:
            self.load_champion(name)
        self._thread = threading.Thread(target=self._run, name="model-watcher", daemon=True)
        self._thread.start()

    def load_champion(self, name: str) -> bool:
        """Install the current champion of ``name``; False (logged) when there is none or it is refused."""
        try:
            version = self.registry.alias_version(name, CHAMPION)
        except SlipstreamError as exc:
            self._error(f"cannot read the champion of {name!r}: {exc}")
            return False
        if version is None:
            log.warning("model %r has no champion yet; its endpoint answers 503 until one is promoted", name)
            return False
        return self.swap(name, version)

    def swap(self, name: str, version: str) -> bool:
        slot = self.slots[name]
        try:
            slot.install(self.registry.load_version(name, version))
        except ModelRefusedError:
            return False  # the slot logged and recorded it
        except ModelError as exc:  # checksum, missing artifacts: never installed, and the slot keeps its model
            self._error(f"refused {name!r} version {version}: {exc}")
            slot.refused(name, version, str(exc))
            return False
        return True

    def handle(self, event: Mapping[str, Any]) -> bool | None:
        """Act on one model event; None when it is not about a champion this watcher serves."""
        name = event.get("model_name")
        if name not in self.slots or event.get("action") not in SWAP_ACTIONS or event.get("alias") != CHAMPION:
            return None
        log.info("%s: %s version %s (was %s)", event["action"], name, event["version"], event.get("previous_version"))
        return self.swap(str(name), str(event["version"]))

    def _run(self) -> None:
        consumer = self._consumer
        assert consumer is not None  # noqa: S101 - set by start()
        try:
            while not self._stop.is_set():
                try:
                    batch = consumer.poll_batch(100, self._poll_s)
                except SlipstreamError as exc:
                    self._error(f"model-events cannot be read: {exc}")
                    self._stop.wait(1.0)
                    continue
                for event in batch.events:
                    self.handle(event.value)
        finally:
            consumer.close()

    def _error(self, text: str) -> None:
        log.error("%s", text)
        self.errors.append(text)
        del self.errors[:-20]

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
