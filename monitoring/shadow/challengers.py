"""The live set of challengers: which model versions the shadow consumer scores beside each champion.

A challenger is a version of a followed model with an MLflow alias starting with ``alias_prefix`` (``challenger``,
``challenger-b``, ...); several per model at once. :class:`ChallengerLoader` loads a version once (checksum checked
by the registry, then its parity sample replayed through the ONNX scorer: a version that fails is refused, logged
and recorded in :attr:`ChallengerSet.refused`, never scored) and reuses it when another alias points at it.

:class:`ChallengerWatcher` keeps the set current without a restart: it pins the end of ``model-events`` *before*
reading the aliases from the registry (so an alias set in between is still seen), then follows the stream on a
thread of its own: ``CHALLENGER_SET`` loads and adds (or re-points) an alias, ``CHALLENGER_REMOVED`` drops it.
The consumer reads an immutable :meth:`ChallengerSet.snapshot` per batch, so a change lands between two batches.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from slipstream.models.registry import LoadedModel
from slipstream.schemas.exceptions import SlipstreamError
from slipstream.schemas.transport import EventConsumer

log = logging.getLogger(__name__)


class Scorer(Protocol):
    def predict(self, x: npt.ArrayLike) -> npt.NDArray[np.float64]: ...


@dataclass(frozen=True, slots=True)
class Challenger:
    """One challenger alias of one model, with the version it points at, ready to score."""

    model_name: str
    alias: str
    version: str
    feature_names: tuple[str, ...]
    threshold: float
    kind: str  # "binary" (scores predictions) or "ranking" (re-ranks recommendations)
    scorer: Scorer

    @classmethod
    def of(cls, model: LoadedModel, alias: str) -> Challenger:
        return cls(model.name, alias, model.version, model.feature_names, model.threshold, model.kind, model.scorer)


@dataclass(frozen=True, slots=True)
class Refusal:
    model_name: str
    alias: str
    version: str
    reason: str


class ChallengerSet:
    """The challengers in force, by (model, alias); thread-safe, read as immutable snapshots."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._by_alias: dict[tuple[str, str], Challenger] = {}
        self._snapshot: tuple[Challenger, ...] = ()
        self.refused: list[Refusal] = []
        self.generation = 0  # bumped on every change

    def snapshot(self) -> tuple[Challenger, ...]:
        """The challengers now in force, ordered by (model, alias)."""
        return self._snapshot

    def put(self, challenger: Challenger) -> None:
        with self._lock:
            self._by_alias[(challenger.model_name, challenger.alias)] = challenger
            self._changed()

    def drop(self, model_name: str, alias: str) -> Challenger | None:
        with self._lock:
            gone = self._by_alias.pop((model_name, alias), None)
            self._changed()
            return gone

    def refuse(self, refusal: Refusal) -> None:
        with self._lock:
            self.refused.append(refusal)
            del self.refused[:-100]
            self._changed()

    def _changed(self) -> None:
        self._snapshot = tuple(self._by_alias[k] for k in sorted(self._by_alias))
        self.generation += 1
        self._lock.notify_all()

    def wait_for(self, predicate: Callable[[tuple[Challenger, ...]], bool], timeout_s: float) -> bool:
        """Block until ``predicate(snapshot)`` holds (True) or ``timeout_s`` passes (False)."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while not predicate(self._snapshot):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
            return True


class ChallengerSource(Protocol):
    """What the loader needs of :class:`slipstream.models.registry.ModelRegistry`."""

    def challengers(self, name: str, prefix: str = ...) -> dict[str, str]: ...

    def load_version(self, name: str, version: str | int) -> LoadedModel: ...


class ChallengerLoader:
    """Loads challenger versions (once each), checks their parity and keeps :attr:`challengers` current."""

    def __init__(
        self, registry: ChallengerSource, models: Sequence[str], alias_prefix: str, challengers: ChallengerSet
    ) -> None:
        self.registry = registry
        self.models = tuple(models)
        self.alias_prefix = alias_prefix
        self.challengers = challengers
        self._loaded: dict[tuple[str, str], LoadedModel] = {}

    def load_all(self) -> None:
        """Every challenger alias of every followed model, as the registry has them now."""
        for name in self.models:
            try:
                aliases = self.registry.challengers(name, self.alias_prefix)
            except SlipstreamError as exc:
                log.error("cannot read the challengers of %r: %s", name, exc)
                continue
            for alias, version in aliases.items():
                self.set(name, alias, version)

    def set(self, name: str, alias: str, version: str) -> bool:
        """Point ``alias`` of ``name`` at ``version``: loaded (or reused), parity-checked, put in force."""
        model = self._loaded.get((name, version))
        if model is None:
            try:
                model = self.registry.load_version(name, version)
                model.check_parity()
            except SlipstreamError as exc:
                log.error("refused challenger %s of %r (version %s): %s", alias, name, version, exc)
                self.challengers.refuse(Refusal(name, alias, version, str(exc)))
                self.challengers.drop(name, alias)  # an alias re-pointed at a refused version no longer scores
                return False
            self._loaded[(name, version)] = model
        self.challengers.put(Challenger.of(model, alias))
        log.info("challenger %s of %r: version %s", alias, name, version)
        return True

    def remove(self, name: str, alias: str) -> bool:
        gone = self.challengers.drop(name, alias)
        if gone is not None:
            log.info("challenger %s of %r (version %s) removed", alias, name, gone.version)
            in_use = {(c.model_name, c.version) for c in self.challengers.snapshot()}
            if (name, gone.version) not in in_use:
                self._loaded.pop((name, gone.version), None)
        return gone is not None

    def handle(self, event: Mapping[str, Any]) -> bool | None:
        """Act on one model event; None when it is not about a challenger of a followed model."""
        name, alias, action = event.get("model_name"), str(event.get("alias") or ""), event.get("action")
        if name not in self.models or not alias.startswith(self.alias_prefix) or alias == "champion":
            return None
        if action == "CHALLENGER_SET":
            return self.set(str(name), alias, str(event["version"]))
        if action == "CHALLENGER_REMOVED":
            return self.remove(str(name), alias)
        return None


class ChallengerWatcher:
    """Follows ``model-events`` on a thread and applies each challenger change to the loader's set."""

    def __init__(self, loader: ChallengerLoader, events: Callable[[], EventConsumer], *, poll_s: float = 0.2) -> None:
        self.loader = loader
        self._events_factory = events
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer: EventConsumer | None = None

    def start(self) -> None:
        """Pin the end of model-events, load the challengers there are, then follow the stream."""
        self._consumer = self._events_factory()
        self.loader.load_all()
        self._thread = threading.Thread(target=self._run, name="challenger-watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        try:
            while not self._stop.is_set():
                try:
                    batch = consumer.poll_batch(100, self._poll_s)
                except SlipstreamError as exc:
                    log.error("model-events cannot be read: %s", exc)
                    self._stop.wait(1.0)
                    continue
                for event in batch.events:
                    self.loader.handle(event.value)
        finally:
            consumer.close()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
