"""One drill, from an empty namespace to its report: the whole platform at accelerated event time.

In order: this drill's namespace (topics ``drill-<run>.*``, its own Feast project in Redis, its own MLflow database)
on the local platform; the feature engine (one process per stage); the champion trained, registered and promoted as
`slipstream train fraud --promote` would at the live start; the 37 days before live through the engine (warm-up);
then `score-stream`, `shadow`, `outcomes`, `drift` and `loop` as child processes, and the live stream — transactions
and labels in event-time order, as fast as the scorer keeps up (at most ``max_lag`` transactions unscored), paused
while the loop retrains (training takes wall time, not event time: in production a day of traffic passes in the
minutes a retrain takes). ``--bad-promotion`` promotes a deliberately worse model mid-run (trained on shuffled
labels) to prove the rollback. At the end the drill waits for every processor to drain, reads ``drift``,
``model-events`` and ``outcomes`` back, and reports (:mod:`slipstream.drill.report`). Everything it started is
stopped and its namespace deleted — also on Ctrl-C and on failure — unless ``keep``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from slipstream.app import Slipstream
from slipstream.demo.namespace import cleanup, start_group_at_end
from slipstream.demo.processes import Child, child_env
from slipstream.demo.timeline import DAY_US, Namespace, iso, merge_order, slice_events
from slipstream.drill.data import DrillData
from slipstream.drill.exceptions import DrillError, DrillStopped
from slipstream.drill.gauges import GroupOffsets, RetrainWatch
from slipstream.monitoring.monitor import TopicReader
from slipstream.schemas.transport import EventProducer

log = logging.getLogger(__name__)
SCORER_GROUP = "slipstream-scorer-fraud"
MARKER_SLACK = 64  # offsets of trailing transaction markers a drained group may stay behind
DRAIN_GROUPS = {
    "slipstream-scorer-fraud": ("transactions",),
    "slipstream-shadow": ("predictions",),
    "slipstream-outcomes": ("predictions", "shadow-comparisons", "labels"),
    "slipstream-drift": ("predictions", "outcomes", "shadow-comparisons"),
    # the loop commits what it has read and decided on: without it, the drill could end before the last decision
    "slipstream-loop": ("model-events", "drift", "outcomes", "shadow-comparisons"),
}


@dataclass(frozen=True, slots=True)
class DrillOptions:
    policy: Path | None = None
    max_lag: int = 2000
    bad_promotion_day: float | None = None  # live day (from the live start) of the deliberate bad promotion
    keep: bool = False
    drift_window_s: float = 86_400.0
    # The live stream waits for the engine, the scorer and the loop's retrains; a wait in which none of them moved
    # for this long (three times as long for a retrain, which moves nothing until it ends) fails the drill, naming
    # what it waited for, rather than waiting for ever.
    stall_s: float = 300.0


@dataclass
class Progress:
    """What the UI shows: events sent of the total, the event time reached, and what the loop did."""

    sent: int = 0
    total: int = 0
    event_us: int = 0
    phase: str = ""
    paused_s: float = 0.0
    notes: list[str] = field(default_factory=list)


def _score(record: dict[str, Any], version: str, score: float) -> dict[str, Any]:
    return {
        "event_id": record["event_id"],
        "model_version": str(version),
        "score": float(score),
        "customer_id": int(record["customer_id"]),
        "event_time": record["event_time"],
    }


class DrillRun:
    def __init__(
        self,
        app: Slipstream,
        data: DrillData,
        options: DrillOptions,
        stop: threading.Event,
        on_progress: Callable[[Progress], None] | None = None,
    ) -> None:
        self.base = app
        self.data = data
        self.options = options
        self.stop = stop
        self.progress = Progress()
        self._on_progress = on_progress or (lambda _p: None)
        self.ns = Namespace.new(app.settings.topic_prefix, datetime.now(UTC))
        self.ns = Namespace(self.ns.run_id, self.ns.prefix.replace("demo-", "drill-"), "drill_" + self.ns.project[5:])
        self.dir = app.settings.state_dir.resolve() / "drills" / self.ns.run_id
        settings = app.settings.model_copy(
            update={
                "topic_prefix": self.ns.prefix,
                "feast_project": self.ns.project,
                "mlflow_tracking_uri": SecretStr(f"sqlite:///{self.dir / 'mlflow.db'}"),
                "offline_dir": self.dir / "offline",
            }
        )
        self.app = Slipstream(settings)
        self.children: dict[str, Child] = {}
        self.timings: dict[str, float] = {}
        self.champion_version: str | None = None
        self.bad_version: str | None = None
        self._engine_stop = threading.Event()
        self._engine_error: list[BaseException] = []
        self._engine: threading.Thread | None = None
        self._applied: dict[str, int] = {}  # events applied per engine stage (on_batch reports)
        self._vectors: dict[str, int] = {}
        self._warm_sent = (0, 0)  # transactions, labels of the warm-up
        self._watch_stop = threading.Event()
        self._producer: EventProducer | None = None

    @property
    def producer(self) -> EventProducer:
        if self._producer is None:
            msg = "the drill's producer is not open yet (the platform did not start)"
            raise DrillError(msg)
        return self._producer

    # ------------------------------------------------------------------ the run
    def run(self) -> dict[str, Any]:
        from slipstream.drill.report import drill_report

        started = time.perf_counter()
        try:
            self._platform()
            self._champion()
            self._warm()
            self._start_children()
            self._live()
            self._drain()
            records = self._read_back()
            report = drill_report(records, self.data, bad_version=self.bad_version)
            report["timings_s"] = {k: round(v, 1) for k, v in self.timings.items()}
            report["timings_s"]["total"] = round(time.perf_counter() - started, 1)
            report["namespace"] = {"prefix": self.ns.prefix, "dir": str(self.dir), "kept": self.options.keep}
            return report
        finally:
            self._shutdown()

    def _phase(self, name: str, began: float) -> None:
        self.timings[name] = time.perf_counter() - began
        self.progress.phase = name
        self._on_progress(self.progress)

    def _check(self) -> None:
        if self.stop.is_set():
            raise DrillStopped
        if self._engine_error:
            msg = f"the feature engine failed: {self._engine_error[0]}"
            raise DrillError(msg)
        for child in self.children.values():
            if not child.alive:
                msg = f"{child.name} exited with code {child.proc.returncode}; its log ({child.log}):\n{child.tail()}"
                raise DrillError(msg)

    def _platform(self) -> None:
        began = time.perf_counter()
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "namespace.json").write_text(json.dumps({"prefix": self.ns.prefix, "project": self.ns.project}))
        if not self.app.external:
            self.app.platform.up()
        self.app.apply_topics()
        self._producer = self.app.producer(linger_ms=5.0, log_level=3)
        from slipstream.streams.engine.app import EngineJob, run_processes
        from slipstream.streams.engine.runner import StageStats

        job = EngineJob(self.app.engine_settings(colocated=True, paced=True), self.ns.prefix, "fraud")

        def on_batch(stage: str, stats: StageStats) -> None:
            self._applied[stage] = stats.applied
            self._vectors[stage] = stats.vectors

        def work() -> None:
            try:
                run_processes(job, self._engine_stop, on_batch=on_batch)
            except BaseException as exc:  # noqa: BLE001 - reported by _check in the main thread
                self._engine_error.append(exc)

        self._engine = threading.Thread(target=work, name="drill-engine", daemon=True)
        self._engine.start()
        self._phase("platform", began)

    def _champion(self) -> None:
        from slipstream.demo.training import train_champion

        began = time.perf_counter()
        champion = train_champion(
            self.app, self.producer, self.data.tx, self.data.labels, self.data.timeline, with_challenger=False
        )
        self.champion_version = champion.version
        self.progress.notes.append(
            f"champion v{champion.version}: validation AP {champion.metrics.get('average_precision', float('nan')):.3f}"
        )
        self._phase("champion", began)

    def _warm(self) -> None:
        from slipstream.demo.traffic import produce_all

        began = time.perf_counter()
        events = slice_events(self.data.tx, self.data.labels, self.data.timeline)
        self._events = events
        warm_tx, warm_labels = events["warm_tx"], events["warm_labels"]
        produce_all(self.producer, warm_tx, warm_labels, self.stop)
        self.producer.flush(120)
        self._warm_sent = (len(warm_tx), len(warm_labels))
        total = 3 * len(warm_tx) + len(warm_labels)
        last, idle_since = -1, time.monotonic()
        while (done := sum(self._applied.values()) + sum(self._vectors.values())) < total:
            self._check()
            if done != last:
                last, idle_since = done, time.monotonic()
            elif done >= total - len(warm_tx) and time.monotonic() - idle_since > 5:
                break  # every event applied; the last vectors wait for live labels
            elif time.monotonic() - idle_since > 300:
                msg = f"the engine applied {done:,} of {total:,} warm-up events and stopped for 5 minutes"
                raise DrillError(msg)
            self.stop.wait(0.3)
        self._phase("warmup", began)

    def _start_children(self) -> None:
        began = time.perf_counter()
        prefix = self.ns.prefix
        start_group_at_end(self.app.kafka, prefix + SCORER_GROUP, self.app.contracts.topic("transactions"))
        env = child_env(self.app, self.ns)
        env["SLIPSTREAM_MLFLOW_TRACKING_URI"] = self.app.mlflow_tracking_uri
        env["SLIPSTREAM_OFFLINE_DIR"] = str(self.app.settings.offline_dir)
        logs = self.dir / "logs"
        loop = ["loop", "--log-level", "info"]
        if self.options.policy is not None:
            loop += ["--policy", str(self.options.policy)]
        commands = {
            "score-stream": ["score-stream", "--quiet", "--log-level", "warning"],
            "shadow": ["shadow"],
            "outcomes": ["outcomes"],
            "drift": ["drift", "--window-s", f"{self.options.drift_window_s:g}"],
            "loop": loop,
        }
        for name, args in commands.items():
            self.children[name] = Child.start(name, args, env, logs / f"{name}.log")
        offsets = GroupOffsets(self.app.kafka)
        try:
            deadline = time.monotonic() + 180
            topic = self.app.contracts.topic("transactions")
            from slipstream.demo.namespace import admin_client, group_assigned

            admin = admin_client(self.app.kafka)
            while not group_assigned(admin, prefix + SCORER_GROUP):
                self._check()
                if time.monotonic() > deadline:
                    msg = f"score-stream did not join its group in 180 s: {self.children['score-stream'].tail(5)}"
                    raise DrillError(msg)
                self.stop.wait(0.3)
            _ = offsets.committed(prefix + SCORER_GROUP, topic)
        finally:
            offsets.close()
        self._phase("processes", began)

    # ------------------------------------------------------------------ live
    def _live(self) -> None:
        began = time.perf_counter()
        producer, contracts = self.producer, self.app.contracts
        live_tx, live_labels = self._events["live_tx"], self._events["live_labels"]
        tx_serde, label_serde = contracts.serde("transactions"), contracts.serde("labels")
        tx_topic = contracts.topic("transactions")
        group = self.ns.prefix + SCORER_GROUP
        offsets = GroupOffsets(self.app.kafka)
        watch = RetrainWatch(self.app.kafka, contracts, self._watch_stop)
        self._watch = watch
        base = offsets.committed(group, tx_topic)
        bad_at = (
            None
            if self.options.bad_promotion_day is None
            else self.data.timeline.live_start_us + round(self.options.bad_promotion_day * DAY_US)
        )
        times = live_tx.columns["event_time"]
        self.progress.total = len(live_tx)
        sent_tx = sent_labels = 0
        try:
            for is_tx, i in merge_order(times, live_labels.columns["event_time"]):
                if not is_tx:
                    record = live_labels.record(i)
                    producer.send_raw(label_serde.topic, contracts.key("labels", record), label_serde.encode(record))
                    sent_labels += 1
                    continue
                if sent_tx % 200 == 0:
                    sent = (self._warm_sent[0] + sent_tx, self._warm_sent[1] + sent_labels)
                    self._gate(offsets, group, tx_topic, base + sent_tx, watch, sent)
                    self.progress.sent, self.progress.event_us = sent_tx, int(times[i])
                    self._on_progress(self.progress)
                if bad_at is not None and int(times[i]) >= bad_at:
                    bad_at = None
                    producer.flush(60)
                    self._bad_promotion(int(times[i]))
                record = live_tx.record(i)
                producer.send_raw(tx_serde.topic, contracts.key("transactions", record), tx_serde.encode(record))
                sent_tx += 1
            producer.flush(120)
            self.progress.sent = sent_tx
        finally:
            offsets.close()
        self._phase("live", began)

    def _engine_behind(self, sent: tuple[int, int]) -> int:
        """Events the engine has yet to apply of the (transactions, labels) sent: every stage applies each
        transaction, the terminal stage also each label (as the warm-up counts them)."""
        transactions, labels = sent
        customer, terminal = self._applied.get("customer", 0), self._applied.get("terminal", 0)
        return max(transactions - customer, transactions + labels - terminal, 0)

    def _gate(
        self, offsets: GroupOffsets, group: str, topic: str, produced: int, watch: RetrainWatch, sent: tuple[int, int]
    ) -> None:
        """Wait while the scorer or the engine is more than ``max_lag`` events behind, or the loop retrains: the
        scorer computes features from the engine's state, so an engine far behind would serve stale features."""
        paused = time.perf_counter()
        flushed = False
        moved, last = time.monotonic(), None
        while True:
            self._check()
            self.producer.poll(0)
            retraining = watch.retraining
            engine, scorer = self._engine_behind(sent), produced - offsets.committed(group, topic)
            if not retraining and engine <= self.options.max_lag and scorer <= self.options.max_lag:
                break
            if retraining and not flushed:
                self.producer.flush(60)
                flushed = True
            now = (retraining, engine, scorer, watch.seen)
            if now != last:
                moved, last = time.monotonic(), now
            elif time.monotonic() - moved > self.options.stall_s * (3 if retraining else 1):
                waiting = f"a retrain ({sorted(watch.in_flight)})" if retraining else "the engine and the scorer"
                msg = (
                    f"the live stream waited {time.monotonic() - moved:.0f} s for {waiting} and nothing moved: "
                    f"the engine is {engine:,} events behind, the scorer {scorer:,} "
                    f"(at most {self.options.max_lag:,} each)"
                )
                raise DrillError(msg)
            self.stop.wait(0.2 if retraining else 0.02)
        self.progress.paused_s += time.perf_counter() - paused

    def _bad_promotion(self, at_us: int) -> None:
        from slipstream.drill.bad_model import promote_bad_model

        self.bad_version = promote_bad_model(self.app, self.data, self.producer, at_us)
        self.progress.notes.append(f"bad promotion: v{self.bad_version} at {iso(at_us)[:16]}")

    def _drain(self, quiet_s: float = 15.0, timeout_s: float = 900.0) -> None:
        """Until every processor has read its inputs (up to the transaction markers a transactional writer leaves
        after its last records: a few offsets no consumer ever commits past) and nothing moved for ``quiet_s``."""
        began = time.perf_counter()
        offsets = GroupOffsets(self.app.kafka)
        contracts = self.app.contracts
        try:
            deadline = time.monotonic() + timeout_s
            still_since, last = time.monotonic(), None
            while True:
                self._check()
                lags = {
                    g: offsets.lag(self.ns.prefix + g, [contracts.topic(t) for t in topics])
                    for g, topics in DRAIN_GROUPS.items()
                }
                if lags != last or self._watch.retraining:
                    still_since, last = time.monotonic(), lags
                elif all(v <= MARKER_SLACK for v in lags.values()) and time.monotonic() - still_since >= quiet_s:
                    break
                if time.monotonic() > deadline:
                    msg = f"the processors did not drain in {timeout_s:g} s: lag per group {lags}"
                    raise DrillError(msg)
                self.stop.wait(1.0)
        finally:
            offsets.close()
        self._phase("drain", began)

    def _read_back(self) -> dict[str, list[dict[str, Any]]]:
        """``drift``, ``drift-windows`` and ``model-events`` whole; every score (champion predictions, challenger
        scores from the shadow) and every LABELLED outcome's label, reduced to the fields the report reads."""
        out: dict[str, list[dict[str, Any]]] = {"scores": [], "outcomes": []}
        for topic in ("drift", "drift-windows", "model-events", "predictions", "shadow-comparisons", "outcomes"):
            rows: list[dict[str, Any]] = []
            with TopicReader(self.app.kafka, self.app.contracts, (topic,)) as reader:
                ends = reader.ends()
                while not reader.caught_up(ends):
                    records, _ = reader.poll(20_000, 0.5)
                    if topic == "predictions":
                        out["scores"] += [_score(r, r["model_version"], r["score"]) for r in records]
                    elif topic == "shadow-comparisons":
                        out["scores"] += [_score(r, r["challenger_version"], r["challenger_score"]) for r in records]
                    elif topic == "outcomes":
                        out["outcomes"] += [
                            {"status": r["status"], "event_id": r["event_id"], "label": r["label"]}
                            for r in records
                            if r["status"] == "LABELLED"
                        ]
                    else:
                        rows.extend(records)
            if topic not in out:
                out[topic] = rows
        return out

    # ------------------------------------------------------------------ stop
    def _shutdown(self) -> None:
        self._watch_stop.set()
        for child in reversed(list(self.children.values())):
            with contextlib.suppress(Exception):
                child.stop()
        self._engine_stop.set()
        if self._engine is not None:
            self._engine.join(30)
        if self._producer is not None:
            with contextlib.suppress(Exception):
                self._producer.flush(5)
        if not self.options.keep:
            with contextlib.suppress(Exception):
                cleanup(self.app, self.ns)
        os.environ.pop("SLIPSTREAM_DRILL_RUN", None)
