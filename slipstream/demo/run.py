"""One demo run, from an empty broker to live scoring and back: see :mod:`slipstream.demo` for the story.

Start-up, in order (the slow parts overlap): the platform and this run's topics; the feature engine (one process per
stage) starts and waits for input; the simulated data is read and split along the timeline; the warm-up is produced
on a thread while the main thread backfills, trains, registers and promotes the champion; the scorer group is set to
start at the live point; `score-stream`, `score-stream --reco`, `serve`, `shadow`, `outcomes`, `drift`, `loop` and
`ui` start as child processes (:func:`~slipstream.demo.processes.start_children`) while the engine works through
the warm-up; live traffic starts once the engine has applied every warm-up event and the scorers answer. The reco
ranker follows the champion (:mod:`slipstream.demo.recommend`); `serve` loads both, and recommendations go live too,
over HTTP and on ``recommendation-requests``. Each model has a challenger, which `shadow` compares with its
champion (with a drift, the fraud challenger is the closed loop's retrained model:
:mod:`slipstream.demo.closedloop`); the outputs are read back (:mod:`slipstream.demo.readback`) into the live
table. The CPU time of every process is noted at the
start and the end of live traffic (the report's ``cpu_s``).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from pydantic import SecretStr

from slipstream.app import Slipstream
from slipstream.demo.base import DemoOptions, DemoReport, DemoUI
from slipstream.demo.closedloop import DRIFT_START, drift_note
from slipstream.demo.exceptions import DemoError, DemoStopped
from slipstream.demo.namespace import RunFiles, admin_client, cleanup, group_assigned, start_group_at_end
from slipstream.demo.probe import HttpScorer, probe_http
from slipstream.demo.processes import (
    RUN_VARIABLE,
    Child,
    children_of,
    cpu_snapshot,
    free_port,
    processes_of_run,
    start_children,
    terminate,
)
from slipstream.demo.readback import ReadBack
from slipstream.demo.recommend import REQUESTS, RecoClient, probe_reco
from slipstream.demo.timeline import (
    DAY_US,
    LABEL_FIELDS_ALL,
    TX_FIELDS,
    WEEK_US,
    Events,
    Namespace,
    Timeline,
    day_micros,
    iso,
    labels_path,
    micros,
    plan_timeline,
    slice_events,
)
from slipstream.demo.traffic import produce_all, stream_live
from slipstream.demo.training import RecoChampion, train_champion, train_reco_champion
from slipstream.schemas.exceptions import SlipstreamError
from slipstream.schemas.transport import EventProducer
from slipstream.streams.engine.runner import StageStats


class DemoRun:
    """One run: :meth:`run` starts everything, streams until ``stop`` is set or the duration is over, then stops
    every child it started and deletes its namespace."""

    def __init__(self, app: Slipstream, options: DemoOptions, ui: DemoUI, stop: threading.Event) -> None:
        self.app = app
        self.options = options
        self.ui = ui
        self.stop = stop
        self.ns = Namespace.new(app.settings.topic_prefix, datetime.now(UTC))
        self.contracts = app.with_prefix(self.ns.prefix)
        self.report = DemoReport(self.ns)
        self.stats = self.report.stats
        self.children: dict[str, Child] = {}
        self.live_events: tuple[Events, Events] | None = None
        self._scorer_group = f"{self.ns.prefix}slipstream-scorer-fraud"
        self._reco_group = f"{self.ns.prefix}slipstream-scorer-reco"
        self._engine_stop = threading.Event()
        self._engine_error: list[BaseException] = []
        self._engine: threading.Thread | None = None
        self._live_stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._producer: EventProducer | None = None
        self._run_file: Path | None = None
        self._clock = time.perf_counter()
        self.reco: RecoChampion | None = None

    @property
    def _token(self) -> SecretStr | None:
        """What the demo's HTTP clients send: `serve` (a child) reads the same settings, so the first token it
        accepts; none when it is open."""
        return next(iter(self.app.settings.accepted_scorer_tokens), None)

    def run(self) -> DemoReport:
        started = time.perf_counter()
        preload = threading.Thread(target=self._preload, name="demo-preload", daemon=True)
        preload.start()  # the model stack imports while Kafka boots
        try:
            producer = self._platform()
            tx, labels, timeline, warm = self._data()
            preload.join()
            self._train_while_warming(producer, tx, labels, timeline, warm)
            del tx, labels
            self._wait_warm(warm)
            self._wait_scorers()
            self.report.timings["startup"] = time.perf_counter() - started
            self._live(producer)
        except DemoStopped:
            pass
        except (SlipstreamError, OSError) as exc:
            self.report.error = str(exc)
        finally:
            self._shutdown()
        return self.report

    # ------------------------------------------------------------------ start-up
    def _preload(self) -> None:
        """Import LightGBM, MLflow and the offline engine, open the registry: seconds of work that need no broker."""
        with contextlib.suppress(Exception):
            importlib.import_module("slipstream.features.offline")
            importlib.import_module("slipstream.models.evaluation")
            importlib.import_module("slipstream.models.fraud")
            importlib.import_module("slipstream.models.reco")
            _ = self.app.model_registry

    def _phase(self, name: str) -> None:
        now = time.perf_counter()
        self.report.timings[name] = now - self._clock
        self._clock = now
        self._check()

    def _platform(self) -> EventProducer:
        app, ns = self.app, self.ns
        self.ui.step("starting Kafka + Redis" if not app.external else f"using Kafka at {app.bootstrap_servers}")
        if not app.external:
            app.platform.up()
        # Inherited by every process of the run from here on; not by Kafka and Redis, which outlive it (counted as
        # left running, a later run's sweep of this one would stop them).
        os.environ[RUN_VARIABLE] = ns.run_id
        runs = RunFiles(app.settings.state_dir)
        for path, stale in runs.stale():
            orphans = processes_of_run(stale.run_id)
            if orphans:
                stuck = terminate(orphans)
                self.ui.done(f"stopped {len(orphans) - len(stuck)} leftover processes of an interrupted run")
            try:
                keys = cleanup(app, stale)
            except (SlipstreamError, redis.RedisError) as exc:
                self.ui.done(f"could not yet delete the leftovers of an interrupted run ({stale.prefix}*): {exc}")
                continue
            path.unlink(missing_ok=True)
            self.ui.done(f"deleted the leftovers of an interrupted run: topics {stale.prefix}*, {keys:,} Redis keys")
        self._run_file = runs.claim(ns)
        app.apply_topics(self.contracts)
        self._producer = app.producer(linger_ms=1.0, contracts=self.contracts, log_level=3)
        self._start_engine()
        self._phase("platform")
        self.ui.done(
            f"Kafka + Redis up; this run's topics: {ns.prefix}*; feature engine starting (a process per stage)"
        )
        return self._producer

    def _data(self) -> tuple[Any, Any, Timeline, tuple[Events, Events]]:
        import pandas as pd

        from slipstream.cli.models import _windows  # the windows `slipstream train fraud` uses

        data = self.options.data
        self.ui.step(f"reading the simulated card traffic ({data})")
        tx = pd.read_parquet(data, columns=[*TX_FIELDS, "tx_fraud"])
        labels = pd.read_parquet(labels_path(data), columns=list(LABEL_FIELDS_ALL))
        train, valid = _windows(tx, None, None)
        warmup_us = int(self.options.warmup_days * DAY_US)
        timeline = plan_timeline(micros(datetime.now(UTC)), train, valid, warmup_us)
        events = slice_events(tx, labels, timeline)
        live_tx = events["live_tx"]
        if not len(live_tx):
            msg = f"{data} holds no transactions after {iso(timeline.live_start_us)} to stream live"
            raise DemoError(msg)
        self.live_events = (live_tx, events["live_labels"])
        loop = self.stats.loop
        loop.enabled, loop.scenario = True, self.options.drift
        if self.options.drift != "none":
            loop.drift_start_us = day_micros(DRIFT_START.isoformat()) + timeline.shift_us
        times = live_tx.columns["event_time"]
        simulated_s_per_tx = (int(times[-1]) - int(times[0])) / 1e6 / max(len(times) - 1, 1)
        self.stats.planned, self.stats.speedup = len(live_tx), simulated_s_per_tx * self.options.rate
        self._phase("data")
        self.ui.done(
            f"{len(tx):,} simulated transactions; live from simulated {iso(timeline.live_start_us)[:16]}, moved "
            f"{timeline.shift_us // WEEK_US:,} weeks to now: {len(live_tx):,} transactions to stream"
            + drift_note(loop.drift_start_us, timeline.live_start_us + timeline.shift_us, self.options.rate)
        )
        return tx, labels, timeline, (events["warm_tx"], events["warm_labels"])

    def _train_while_warming(
        self, producer: EventProducer, tx: Any, labels: Any, timeline: Timeline, warm: tuple[Events, Events]
    ) -> None:
        """Produce the warm-up on a thread (the engine takes it from there) while the champion is trained here."""
        warm_tx, warm_labels = warm

        warming = threading.Thread(
            target=produce_all, args=(producer, warm_tx, warm_labels, self.stop), name="demo-warmup", daemon=True
        )
        warming.start()
        train, valid = timeline.train, timeline.valid
        self.ui.step(
            f"backfilling offline features; training on {train[0]}..{train[1]}, validating on {valid[0]}..{valid[1]}"
        )
        # with a drift the loop's retrained model is the fraud challenger; without, the demo sets its own
        champion = train_champion(
            self.app, producer, tx, labels, timeline, with_challenger=self.options.drift == "none"
        )
        self.report.champion = champion
        self._phase("train")
        self.ui.done(champion.story(self.app.settings.fraud_model, self.app.settings.offline_dir))
        if champion.challenger is not None:
            self.ui.done(champion.challenger.story(self.app.settings.fraud_model))
        self.ui.step("training the recommendations ranker on the simulated clickstream (as `slipstream train reco`)")
        self.reco = reco = train_reco_champion(self.app, producer, self.ns.project)
        self.stats.reco.registered = reco.version
        self.stats.reco.offline_ndcg = reco.metrics.get("ndcg_at_10", float("nan"))
        self._phase("reco")
        self.ui.done(reco.story(self.app.settings.reco_model))
        if reco.challenger is not None:
            self.stats.reco.challenger = reco.challenger.version
            self.ui.done(reco.challenger.story(self.app.settings.reco_model))
        warming.join()
        producer.flush(120)
        start_group_at_end(self.app.kafka, self._scorer_group, self.contracts.topic("transactions"))
        start_group_at_end(self.app.kafka, self._reco_group, self.contracts.topic(REQUESTS))
        self._start_scorers()

    def _wait_warm(self, warm: tuple[Events, Events]) -> None:
        warm_tx, warm_labels = warm
        # customer stage: the transactions; terminal stage: both, and a feature vector per transaction
        total = 3 * len(warm_tx) + len(warm_labels)
        self.ui.step(
            f"warming the online store: {len(warm_tx):,} transactions and {len(warm_labels):,} labels of the "
            f"{self.options.warmup_days:g} days before live, through the engine into Redis"
        )
        last, idle_since = -1, time.monotonic()
        while (done := self._warm_done()) < total:
            self._check()
            self.ui.warm(done, total)
            if done != last:
                last, idle_since = done, time.monotonic()
            elif done >= total - len(warm_tx) and time.monotonic() - idle_since > 5:
                break  # every event applied; the last vectors wait for live labels (at most the lateness)
            self.stop.wait(0.2)
        self.ui.warm(total, total)
        self._phase("warmup")
        self.ui.done(f"online store warm: {len(warm_tx) + len(warm_labels):,} events applied by the engine")

    def _warm_done(self) -> int:
        stages = self.stats.stages
        terminal = stages.get("terminal")
        return sum(s.applied for s in stages.values()) + (terminal.vectors if terminal else 0)

    def _wait_scorers(self, timeout_s: float = 180.0) -> None:
        port = self.report.http_port
        self.ui.step(f"waiting for the scorers: score-stream (Kafka) and serve (HTTP, port {port})")
        http, admin = RecoClient(port, token=self._token), admin_client(self.app.kafka)
        deadline = time.monotonic() + timeout_s
        reco = self.stats.reco
        try:
            while not (http.ready() and group_assigned(admin, self._scorer_group) and http.has_reco(reco)):
                self._check()
                if time.monotonic() > deadline:
                    logs = "; ".join(f"{c.name} ({c.log}): {c.tail(5)}" for c in self.children.values())
                    msg = f"the scorers were not ready after {timeout_s:g} s: {logs}"
                    raise DemoError(msg)
                self.stop.wait(0.3)
        finally:
            http.close()
        self._phase("scorers")
        version = self.report.champion.version if self.report.champion else "?"
        self.ui.done(
            f"scorers ready with fraud v{version} and reco v{reco.loaded or '-'}: score-stream → predictions, "
            f"http://127.0.0.1:{port} (/v1/fraud/score, /v1/recommendations)"
        )

    def _start_engine(self) -> None:
        from slipstream.streams.engine.app import EngineJob, run_processes

        job = EngineJob(self.app.engine_settings(project=self.ns.project, colocated=True), self.ns.prefix, "fraud")

        def on_batch(stage: str, stats: StageStats) -> None:
            self.stats.stages[stage] = stats

        def work() -> None:
            try:
                run_processes(job, self._engine_stop, on_batch=on_batch)
            except BaseException as exc:  # noqa: BLE001 - reported by _check in the main thread
                self._engine_error.append(exc)

        self._engine = threading.Thread(target=work, name="demo-engine", daemon=True)
        self._engine.start()

    def _start_scorers(self) -> None:
        logs = self.app.settings.state_dir / "demo" / self.ns.run_id
        port = self.options.port or free_port()
        self.report.http_port = self.stats.http_port = port
        ui_port = free_port() if self.options.ui else None
        if ui_port is not None:
            self.stats.loop.ui_url = f"http://127.0.0.1:{ui_port}"
        self.children.update(start_children(self.app, self.ns, port, logs, policy=self.options.policy, ui_port=ui_port))

    def _check(self) -> None:
        """Raise if the run cannot go on: stopped, the engine failed, or a child exited."""
        if self.stop.is_set():
            raise DemoStopped
        if self._engine_error:
            msg = f"the feature engine failed: {self._engine_error[0]}"
            raise DemoError(msg)
        if self._engine is not None and not self._engine.is_alive():
            msg = "the feature engine stopped"
            raise DemoError(msg)
        for child in self.children.values():
            if not child.alive:
                msg = f"{child.name} exited with code {child.proc.returncode}; its log ({child.log}):\n{child.tail()}"
                raise DemoError(msg)

    # ------------------------------------------------------------------ live
    def _live(self, producer: EventProducer) -> None:
        if self.live_events is None:
            return
        stats, options = self.stats, self.options
        live_tx, live_labels = self.live_events
        self.report.live = True
        reader = ReadBack(self.app, self.contracts, stats)
        stats.started = time.perf_counter()
        at_start = self.report.cpu_s["startup"] = cpu_snapshot(self.children)
        self._spawn(
            "demo-live",
            lambda: stream_live(
                producer,
                live_tx,
                live_labels,
                stats,
                self._live_stop,
                rate=options.rate,
                poison_every=options.poison_every,
            ),
        )
        http = HttpScorer(self.report.http_port, token=self._token)
        self._spawn("demo-http", lambda: probe_http(http, stats, self._live_stop, options.http_every_s))
        if self.reco is not None:
            queries, client = self.reco.queries, RecoClient(self.report.http_port, token=self._token)
            self._spawn(
                "demo-reco",
                lambda: probe_reco(client, queries, stats, self._live_stop, stream=producer, id_prefix=self.ns.prefix),
            )
        last_render = 0.0
        drain_until: float | None = None
        try:
            while True:
                now = reader.poll()
                if now - last_render >= 0.5:
                    self.ui.live(stats)
                    last_render = now
                if drain_until is None:
                    over = options.duration_s is not None and stats.elapsed >= options.duration_s
                    if over or self.stop.is_set():
                        self._live_stop.set()  # stop producing; what is in flight gets a moment to be scored
                        stats.stopped = now
                        drain_until = now + 5.0
                    else:
                        self._check()
                elif now > drain_until or (stats.scored >= stats.produced and not self._busy()):
                    break
        finally:
            reader.close()
            at_end = cpu_snapshot(self.children)
            self.report.cpu_s["live"] = {k: v - at_start.get(k, 0.0) for k, v in at_end.items()}
            self.ui.live(stats)

    def _busy(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    # ------------------------------------------------------------------ stop
    def _shutdown(self) -> None:
        """Stop producing, stop every child (SIGTERM, then SIGKILL), delete the namespace, list what is left."""
        self._live_stop.set()
        try:
            for thread in self._threads:
                thread.join(10)
            for name, child in self.children.items():
                self.report.exit_codes[name] = child.stop()
        finally:  # a second Ctrl-C meanwhile still stops the engine (its stages are in sessions of their own)
            self._engine_stop.set()
        if self._engine is not None:
            self._engine.join(60)
            self.report.exit_codes["engine"] = 0 if not self._engine_error and not self._engine.is_alive() else 1
        if self._producer is not None:
            with contextlib.suppress(SlipstreamError):
                self._producer.flush(10)
        if self.stats.stopped is None:
            self.stats.stopped = time.perf_counter()
        self.report.left_running = sorted(set(children_of(os.getpid())) | set(processes_of_run(self.ns.run_id)))
        os.environ.pop(RUN_VARIABLE, None)
        if not self.options.keep:
            with contextlib.suppress(SlipstreamError, redis.RedisError, OSError):
                cleanup(self.app, self.ns)
                self.report.cleaned = True
        if self._run_file is not None and (self.report.cleaned or self.options.keep):
            self._run_file.unlink(missing_ok=True)  # else the next run finds it and deletes what is left
