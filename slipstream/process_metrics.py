"""Prometheus ``/metrics`` of the long-running stream processes: ``features run``, ``shadow``, ``outcomes``,
``drift`` and ``loop`` (``serve``, ``score-stream`` and ``monitor`` have their own, serving/metrics.py and
monitoring/metrics.py).

One collector per process, on a registry of its own, reads at each scrape what the process already counts:

- the engine's per-stage stats, reported by its worker processes to the parent (every worker of a stage summed:
  the parent serves them all on one port, so N workers need no multi-process mode);
- a monitoring processor's :class:`~slipstream.monitoring.transactional.ProcessorStats` and its handler's counts,
  read live from the host (in-process workers) or from the snapshots child workers send every few seconds;
- the loop's records, decisions and failures;
- **consumer-group lag**, as the broker knows it (committed offsets against the input partitions' ends), read by a
  background thread every ``lag_interval_s`` for each group the process consumes in — lag a process's own counters
  cannot see (a worker that hangs, or one that is down while another keeps the port).

Every figure is a counter of what the process did since it started (``_total``) except the gauges named below.
Counts of a monitoring handler are counted as records are processed: a transaction aborted and replayed counts its
records again (the outputs, written in transactions, are exact; these counters are for rates and alerts).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final

from prometheus_client import start_http_server
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from slipstream.schemas.transport.connection import KafkaLike
from slipstream.streams.engine.exceptions import LagError
from slipstream.streams.engine.lag import GroupLag

#: StageStats field -> (counter name without _total, help)
ENGINE: Final = (
    ("consumed", "slipstream_engine_records_consumed", "Records a stage read (events, forwards, markers)."),
    ("applied", "slipstream_engine_events_applied", "Events applied to window state."),
    ("duplicates", "slipstream_engine_duplicates", "Events skipped as already applied (a replay after a crash)."),
    ("dead_lettered", "slipstream_engine_dead_letters", "Records sent to the dead-letter topic."),
    ("vectors", "slipstream_engine_feature_vectors", "Feature vectors written to the feature log."),
    ("rows_written", "slipstream_engine_online_rows_written", "Rows written to the online store."),
    ("rows_stale", "slipstream_engine_online_rows_stale", "Rows not written: the store held a newer one."),
    ("rows_rejected", "slipstream_engine_online_rows_rejected", "Rows Redis refused (dead-lettered)."),
    ("evicted", "slipstream_engine_entities_evicted", "Idle entities' state evicted (tombstoned)."),
    ("restored_keys", "slipstream_engine_state_restored_keys", "Entity states restored from the changelog."),
    ("batches", "slipstream_engine_batches", "Batches processed."),
)
#: ProcessorStats field -> (counter name without _total, help)
PROCESSOR: Final = (
    ("consumed", "slipstream_processor_records_consumed", "Input records read."),
    ("produced", "slipstream_processor_records_produced", "Output records written (in transactions)."),
    ("dead_letters", "slipstream_processor_dead_letters", "Records sent to the dead-letter topic."),
    ("transactions", "slipstream_processor_transactions", "Kafka transactions committed."),
    ("aborted", "slipstream_processor_transactions_aborted", "Kafka transactions aborted (then replayed)."),
    ("restored", "slipstream_processor_state_restored", "State entries restored from the changelog."),
    ("rebalances", "slipstream_processor_rebalances", "Partition assignments and revocations."),
)
LOOP: Final = (
    ("records", "slipstream_loop_records", "Records the loop read (decisions, drift, outcomes, comparisons)."),
    ("failures", "slipstream_loop_failures", "Decisions that failed to apply (retrain, alias change)."),
)


def _fields(obj: Any) -> dict[str, Any]:
    if obj is None:
        return {}
    if isinstance(obj, Mapping):
        return dict(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    return {}


def handler_counts(handler: Any) -> dict[str, int]:
    """A monitoring handler's counts (an attribute or a method ``counts``), the integer fields only."""
    counts = getattr(handler, "counts", None)
    if callable(counts):
        counts = counts()
    return {k: v for k, v in _fields(counts).items() if isinstance(v, int) and not isinstance(v, bool)}


class ProcessMetrics(Collector):
    """The ``/metrics`` of one process (``process`` names it: ``features``, ``shadow``, ``outcomes``, ...)."""

    def __init__(self, process: str, *, lag_interval_s: float = 15.0) -> None:
        self.process = process
        self.registry = CollectorRegistry(auto_describe=False)
        self._lock = threading.Lock()
        self._engine: dict[tuple[str, str], Any] = {}
        self._live: dict[tuple[str, str], Any] = {}  # (processor, worker) -> a running host
        self._snapshots: dict[tuple[str, str], tuple[dict[str, Any], dict[str, int]]] = {}
        self._loop: Any = None
        self._lag: dict[str, int] = {}
        self._lag_errors = 0
        self._lag_every = lag_interval_s
        self._groups: dict[str, tuple[KafkaLike, tuple[str, ...]]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = time.time()
        self.registry.register(self)

    # ------------------------------------------------------------------------------------------ what is counted
    def engine(self, feature_set: str, stage: str, stats: Any) -> None:
        """The latest stats of a stage (its workers summed), as the engine reports them."""
        with self._lock:
            self._engine[(feature_set, stage)] = stats

    def host(self, processor: str, worker: str, host: Any) -> None:
        """A monitoring processor running in this process: read live at each scrape."""
        with self._lock:
            self._live[(processor, worker)] = host

    def snapshot(self, processor: str, worker: str, stats: Mapping[str, Any], counts: Mapping[str, int]) -> None:
        """What a worker process reported last (its ProcessorStats and handler counts as dicts)."""
        with self._lock:
            self._snapshots[(processor, worker)] = (dict(stats), dict(counts))

    def loop(self, stats: Any) -> None:
        with self._lock:
            self._loop = stats

    def watch_lag(self, bootstrap_servers: KafkaLike, group: str, topics: Sequence[str]) -> None:
        """Report ``group``'s lag over ``topics`` (full names), read from the broker every ``lag_interval_s``."""
        with self._lock:
            self._groups[group] = (bootstrap_servers, tuple(topics))
        if self._thread is None:
            self._thread = threading.Thread(target=self._read_lag, name="metrics-lag", daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------------------------------ serving
    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Serve ``/metrics`` on ``host:port`` from a daemon thread."""
        start_http_server(port, addr=host, registry=self.registry)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def _read_lag(self) -> None:
        readers: dict[str, GroupLag] = {}
        try:
            while True:
                with self._lock:
                    groups = dict(self._groups)
                for group, (kafka, topics) in groups.items():
                    try:
                        if group not in readers:
                            readers[group] = GroupLag(kafka, group, topics)
                        value = readers[group].lag()
                    except LagError:
                        reader = readers.pop(group, None)
                        if reader is not None:
                            reader.close()
                        with self._lock:
                            self._lag_errors += 1
                        continue
                    with self._lock:
                        self._lag[group] = value
                if self._stop.wait(self._lag_every):
                    return
        finally:
            for reader in readers.values():
                reader.close()

    # ------------------------------------------------------------------------------------------ a scrape
    def collect(self) -> Iterator[Metric]:
        with self._lock:
            engine = dict(self._engine)
            live = dict(self._live)
            snapshots = dict(self._snapshots)
            loop, lag, lag_errors = self._loop, dict(self._lag), self._lag_errors
        info = GaugeMetricFamily("slipstream_process_up", "1 while the process runs.", labels=["process"])
        info.add_metric([self.process], 1.0)
        yield info
        yield GaugeMetricFamily(
            "slipstream_process_start_time_seconds", "When the process started (Unix time).", value=self._started
        )
        if engine:
            yield from self._engine_families(engine)
        rows = {key: (_fields(h.stats), handler_counts(getattr(h, "handler", None))) for key, h in live.items()}
        rows |= snapshots
        if rows:
            yield from self._processor_families(rows)
        if loop is not None:
            yield from self._loop_families(loop)
        gauge = GaugeMetricFamily(
            "slipstream_consumer_lag_records",
            "Records the group has not committed yet over its inputs (end offsets minus committed offsets).",
            labels=["group"],
        )
        for group, value in sorted(lag.items()):
            gauge.add_metric([group], float(value))
        yield gauge  # no sample before the first read
        if self._groups:
            yield CounterMetricFamily(
                "slipstream_consumer_lag_read_errors", "Lag reads the broker did not answer.", value=lag_errors
            )

    def _engine_families(self, engine: dict[tuple[str, str], Any]) -> Iterator[Metric]:
        labels = ["feature_set", "stage"]
        for attr, name, doc in ENGINE:
            family = CounterMetricFamily(name, doc, labels=labels)
            for (feature_set, stage), stats in sorted(engine.items()):
                family.add_metric([feature_set, stage], float(getattr(stats, attr)))
            yield family
        quiet = GaugeMetricFamily(
            "slipstream_engine_seconds_since_last_batch",
            "Seconds since the stage last processed a batch.",
            labels=labels,
        )
        now = time.monotonic()  # the workers' clock too: CLOCK_MONOTONIC is system-wide on Linux
        for (feature_set, stage), stats in sorted(engine.items()):
            quiet.add_metric([feature_set, stage], max(0.0, now - stats.last_batch_at))
        yield quiet

    def _processor_families(
        self, rows: dict[tuple[str, str], tuple[dict[str, Any], dict[str, int]]]
    ) -> Iterator[Metric]:
        labels = ["processor", "worker"]
        for attr, name, doc in PROCESSOR:
            family = CounterMetricFamily(name, doc, labels=labels)
            for (processor, worker), (stats, _) in sorted(rows.items()):
                family.add_metric([processor, worker], float(stats.get(attr, 0)))
            yield family
        partitions = GaugeMetricFamily("slipstream_processor_partitions", "Partitions the worker holds.", labels=labels)
        for (processor, worker), (stats, _) in sorted(rows.items()):
            partitions.add_metric([processor, worker], float(len(stats.get("partitions", ()))))
        yield partitions
        names = sorted({(p, c) for (p, _), (_, counts) in rows.items() for c in counts})
        for processor, count in names:
            family = CounterMetricFamily(
                f"slipstream_{processor.replace('-', '_')}_{count}",
                f"{processor}: {count.replace('_', ' ')} (the handler's count).",
                labels=["worker"],
            )
            for (p, worker), (_, counts) in sorted(rows.items()):
                if p == processor and count in counts:
                    family.add_metric([worker], float(counts[count]))
            yield family

    def _loop_families(self, loop: Any) -> Iterator[Metric]:
        for attr, name, doc in LOOP:
            yield CounterMetricFamily(name, doc, value=float(getattr(loop, attr)))
        decisions = CounterMetricFamily("slipstream_loop_decisions", "Decisions taken, by kind.", labels=["decision"])
        for kind, n in sorted(dict(loop.decisions).items()):
            decisions.add_metric([kind], float(n))
        yield decisions


def observed(
    factory: Callable[..., Any], metrics: ProcessMetrics, worker: str, *, lag: bool = True
) -> Callable[..., Any]:
    """A monitoring host factory whose hosts ``metrics`` reads live (and whose group's lag it watches)."""

    def make(bootstrap_servers: KafkaLike, contracts: Any, **kwargs: Any) -> Any:
        host = factory(bootstrap_servers, contracts, **kwargs)
        name = kwargs.get("processor_name", "processor")
        metrics.host(name, worker, host)
        if lag:
            metrics.watch_lag(bootstrap_servers, kwargs["group_id"], [contracts.topic(t) for t in kwargs["inputs"]])
        return host

    return make


def reporting(
    factory: Callable[..., Any], put: Callable[[tuple[Any, ...]], None], worker: str, *, every_s: float = 2.0
) -> Callable[..., Any]:
    """A host factory for a worker process: every ``every_s`` it sends ``("progress", worker, processor, stats,
    counts)`` to its parent (which serves the metrics) until the host's run ends."""

    def make(bootstrap_servers: KafkaLike, contracts: Any, **kwargs: Any) -> Any:
        host = factory(bootstrap_servers, contracts, **kwargs)
        name = kwargs.get("processor_name", "processor")

        def send() -> None:
            while True:
                put(("progress", worker, name, _fields(host.stats), handler_counts(getattr(host, "handler", None))))
                time.sleep(every_s)

        threading.Thread(target=send, name=f"report-{name}", daemon=True).start()
        return host

    return make


__all__: Sequence[str] = ("ProcessMetrics", "handler_counts", "observed", "reporting")
