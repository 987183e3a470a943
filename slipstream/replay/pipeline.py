"""The production processors, hosted for a replay: the feature engine (one process per stage, as ``features run``)
and the Kafka scorer (``score-stream``'s :class:`~slipstream.serving.stream.ScoreStream`, stepped by the feed so it
scores each chunk before the next is published).

Why the scorer is stepped, not free-running: a score is exact while the scorer is less than the allowed lateness
behind the engine in event time (the engine prunes what no window reaches any more, relative to the entity's newest
event; docs/architecture.md, "Scoring"). In production the scorer runs ahead of a niced engine; a replay at full speed
would let the engine run ahead by minutes. Publishing in chunks spanning at most half the lateness, each scored
before the next, keeps the engine at most one chunk ahead — the production condition, made deterministic.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from slipstream.app import Slipstream
from slipstream.drill.gauges import GroupOffsets
from slipstream.replay.exceptions import ReplayError, ReplayStopped
from slipstream.replay.slice_models import SliceModels
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.exceptions import SlipstreamError
from slipstream.serving.stream import ScoreStream
from slipstream.streams.engine.app import EngineJob, run_processes
from slipstream.streams.engine.topology import topology_for

Say = Callable[[str], None]


@dataclass
class Pipeline:
    app: Slipstream
    contracts: Contracts
    feature_sets: Sequence[str]
    models: SliceModels
    project: str
    stop: threading.Event = field(default_factory=threading.Event)
    _engine_threads: list[threading.Thread] = field(default_factory=list)
    _engine_errors: list[BaseException] = field(default_factory=list)
    _stream: ScoreStream | None = None
    _offsets: GroupOffsets | None = None
    _parts: list[Any] = field(default_factory=list)  # what close() must close

    # ------------------------------------------------------------------ the engine
    def start_engine(self) -> None:
        prefix = self.contracts.catalog.prefix
        settings = self.app.engine_settings(project=self.project)
        for name in self.feature_sets:
            job = EngineJob(settings, prefix, name)

            def work(job: EngineJob = job) -> None:
                try:
                    run_processes(job, self.stop)
                except BaseException as exc:  # noqa: BLE001 - reported by check()
                    self._engine_errors.append(exc)

            thread = threading.Thread(target=work, name=f"replay-engine-{name}", daemon=True)
            thread.start()
            self._engine_threads.append(thread)

    def engine_lag(self) -> int:
        """Records of the engine's inputs not yet committed by its stages (every stage of every set)."""
        if self._offsets is None:
            self._offsets = GroupOffsets(self.app.kafka)
        prefix = self.contracts.catalog.prefix
        lag = 0
        for name in self.feature_sets:
            for stage in topology_for(name).stages:
                group = f"{prefix}slipstream-engine-{name}-{stage.name}"
                lag += self._offsets.lag(group, [self.contracts.topic(t) for t in stage.inputs])
        return lag

    def wait_engine(self, total: int, on_progress: Callable[[int, int], None], timeout_s: float = 1800.0) -> float:
        """Until every stage has committed everything published so far; the seconds it took."""
        started = time.monotonic()
        while True:
            self.check()
            lag = self.engine_lag()
            on_progress(max(total - lag, 0), total)
            if lag == 0:
                return time.monotonic() - started
            if time.monotonic() - started > timeout_s:
                msg = f"the feature engine did not catch up within {timeout_s:g} s ({lag:,} records behind)"
                raise ReplayError(msg)
            self.wait(0.25)

    def settle_engine(self, timeout_s: float = 120.0) -> None:
        """Until the engine has applied and committed everything published (a label before the event it counts for)."""
        deadline = time.monotonic() + timeout_s
        while self.engine_lag() > 0:
            self.check()
            if time.monotonic() > deadline:
                msg = f"the feature engine did not apply the window's records within {timeout_s:g} s"
                raise ReplayError(msg)
            self.wait(0.01)

    def check(self) -> None:
        if self._engine_errors:
            msg = f"the feature engine stopped: {self._engine_errors[0]}"
            raise ReplayError(msg) from self._engine_errors[0]
        if self.stop.is_set():
            raise ReplayStopped

    def wait(self, seconds: float) -> None:
        if self.stop.wait(seconds):
            raise ReplayStopped

    # ------------------------------------------------------------------ the scorer
    def start_scorer(self) -> ScoreStream:
        """The Kafka scorer, pinned at today's end of the transactions topic (the window is published after)."""
        service = self.app.scoring_service(
            contracts=self.contracts, project=self.project, remember_recent=True, reco=False
        )
        assert service.watcher is not None  # noqa: S101 - the composition root always gives one
        service.watcher.registry = self.models
        producer = self.app.producer(linger_ms=0.5, contracts=self.contracts, client_id="slipstream-replay-scorer")
        consumer = self.app.consumer(
            ["transactions"],
            group_id=None,  # assigned every partition at its end now: nothing published after is missed
            from_beginning=False,
            dead_letters=producer,
            processor="score-stream",
            contracts=self.contracts,
        )
        self._parts.extend([consumer, producer, service])
        service.start()
        if not service.fraud_slot.loaded:
            errors = "; ".join(service.watcher.errors) or "no champion"
            msg = f"the replay scorer has no model to serve: {errors}"
            raise ReplayError(msg)
        self._stream = ScoreStream(service, consumer, producer)
        return self._stream

    @property
    def stream(self) -> ScoreStream:
        if self._stream is None:
            msg = "the scorer is not started"
            raise ReplayError(msg)
        return self._stream

    def serving(self) -> str:
        return self.stream.service.fraud_slot.current.version

    def swap(self, model: str, version: str) -> None:
        """Serve ``version`` from now on, checked and warmed as a production swap (the watcher's own path)."""
        watcher = self.stream.service.watcher
        assert watcher is not None  # noqa: S101 - set at start
        if not watcher.swap(model, version):
            msg = f"the replay scorer refused {model!r} version {version}: {'; '.join(watcher.errors[-1:])}"
            raise ReplayError(msg)

    def drain(self, consumed: int, timeout_s: float = 300.0) -> None:
        """Step the scorer until it has consumed ``consumed`` records of the window in all."""
        stream = self.stream
        deadline = time.monotonic() + timeout_s
        while stream.stats.consumed < consumed:
            self.check()
            stream.step(self.stop)
            if time.monotonic() > deadline:
                msg = f"the replay scorer consumed {stream.stats.consumed:,} of {consumed:,} records in {timeout_s:g} s"
                raise ReplayError(msg)

    def finish_scoring(self) -> None:
        self.stream.commit(final=True)
        self.stream.producer.flush()

    # ------------------------------------------------------------------ the end
    def close(self) -> None:
        """Stop the engine processes and the scorer; safe to call twice and after a failure."""
        self.stop.set()
        for thread in self._engine_threads:
            thread.join(timeout=60)
        for part in reversed(self._parts):
            try:
                if hasattr(part, "stop"):
                    part.stop()
                else:
                    part.close()
            except (SlipstreamError, RuntimeError):
                pass
        self._parts.clear()
        if self._offsets is not None:
            self._offsets.close()
            self._offsets = None
