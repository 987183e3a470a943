"""The serving model and how it is replaced without downtime.

:class:`ModelSlot` holds one :class:`~serving.base.ServingModel`. Replacing it is one reference assignment (atomic
in CPython); a request reads the reference once at its start and scores with that model to its end, so in-flight
requests finish on the old model and no request sees half a swap. A candidate is installed only after it passed
every check — its feature list is one the scorer computes, its ONNX output matches the parity sample stored with it
at registration, and it has been warmed up — otherwise it is refused and the current model keeps serving.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from slipstream.models.exceptions import ModelError
from slipstream.models.registry import LoadedModel
from slipstream.serving.base import ServingModel
from slipstream.serving.exceptions import ModelRefusedError, ModelUnavailableError

log = logging.getLogger(__name__)
WARMUP_RUNS = 200


@dataclass(frozen=True, slots=True)
class SwapRecord:
    """One attempted swap: what was asked, what happened, how long it took."""

    model: str
    version: str
    accepted: bool
    reason: str
    seconds: float


class ModelSlot:
    """The model one endpoint serves, replaced atomically; ``computable`` are the features the scorer can give."""

    def __init__(
        self,
        name: str,
        computable: Sequence[str],
        *,
        kind: str = "binary",
        on_swap: Callable[[SwapRecord, ServingModel | None], None] | None = None,
    ) -> None:
        self.name = name
        self.computable = frozenset(computable)
        self.kind = kind
        self._current: ServingModel | None = None
        self._lock = threading.Lock()  # serialises installs, never taken by requests
        self._on_swap = on_swap
        self.history: list[SwapRecord] = []

    @property
    def current(self) -> ServingModel:
        model = self._current
        if model is None:
            msg = f"no {self.name!r} model is loaded yet (register one and promote it to champion)"
            raise ModelUnavailableError(msg)
        return model

    @property
    def loaded(self) -> bool:
        return self._current is not None

    def install(self, loaded: LoadedModel) -> ServingModel:
        """Check ``loaded``, warm it, then make it the serving model; :class:`ModelRefusedError` if a check fails."""
        started = time.perf_counter()
        with self._lock:
            try:
                model = self._prepare(loaded)
            except ModelRefusedError as exc:
                self._record(SwapRecord(loaded.name, loaded.version, False, str(exc), time.perf_counter() - started))
                raise
            self._current = model
            self._record(SwapRecord(loaded.name, loaded.version, True, "installed", time.perf_counter() - started))
            return model

    def refused(self, name: str, version: str, reason: str) -> None:
        """Record a candidate that could not even be loaded (e.g. a corrupt artifact); the current model stays."""
        self._record(SwapRecord(name, version, False, reason, 0.0))

    def _record(self, record: SwapRecord) -> None:
        self.history.append(record)
        del self.history[:-50]
        if record.accepted:
            log.info(
                "serving %s version %s (checked and warmed in %.3f s)", record.model, record.version, record.seconds
            )
        else:
            log.warning("refused %s version %s: %s", record.model, record.version, record.reason)
        if self._on_swap is not None:
            self._on_swap(record, self._current)

    def _prepare(self, loaded: LoadedModel) -> ServingModel:
        what = f"{loaded.name!r} version {loaded.version}"
        if loaded.name != self.name:
            msg = f"{what} is not a {self.name!r} model"
            raise ModelRefusedError(msg)
        try:
            kind = loaded.kind
        except ModelError as exc:
            msg = f"{what}: {exc}"
            raise ModelRefusedError(msg) from exc
        if kind != self.kind:
            msg = f"{what} is a {kind} model; this endpoint serves {self.kind} models"
            raise ModelRefusedError(msg)
        unknown = [name for name in loaded.feature_names if name not in self.computable]
        if unknown:
            msg = f"{what} needs features the scorer does not compute: {unknown!r}"
            raise ModelRefusedError(msg)
        if loaded.scorer.n_features != len(loaded.feature_names):
            msg = (
                f"{what}: the ONNX graph takes {loaded.scorer.n_features} features but the card lists "
                f"{len(loaded.feature_names)}"
            )
            raise ModelRefusedError(msg)
        try:
            report = loaded.check_parity()
        except ModelError as exc:
            msg = f"{what} failed its parity check: {exc}"
            raise ModelRefusedError(msg) from exc
        sample = np.asarray(loaded.card["parity_sample"]["x"], dtype=np.float64)
        row = sample[:1]
        for _ in range(WARMUP_RUNS):  # first runs allocate; do it before traffic sees the model
            loaded.scorer.predict(row)
        loaded.scorer.predict(sample)
        log.debug("%s parity max |diff| %.3g over %d rows", what, report.max_abs_diff, report.n)
        return ServingModel(
            name=loaded.name,
            version=loaded.version,
            scorer=loaded.scorer,
            feature_names=loaded.feature_names,
            threshold=loaded.threshold,
            kind=kind,
            loaded_at_us=time.time_ns() // 1000,
            card=loaded.card,
        )
