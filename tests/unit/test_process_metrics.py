"""ProcessMetrics: a scrape of a long-running process shows what it counted — engine stages, monitoring processors
read live or from their workers' snapshots, the loop — under stable names and labels, in Prometheus' text format."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from slipstream.monitoring.loop.controller import LoopStats
from slipstream.monitoring.transactional import ProcessorStats
from slipstream.process_metrics import ProcessMetrics, handler_counts, observed, reporting
from slipstream.streams.engine.settings import StageStats


def _samples(metrics: ProcessMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@dataclass
class Counts:
    labelled: int = 0
    unlabelled: int = 0
    ratio: float = 0.5  # not a count: left out
    join: dict[str, int] = field(default_factory=dict)  # nested: left out


class Host:
    def __init__(self) -> None:
        self.stats = ProcessorStats()
        self.handler = self

    def counts(self) -> Counts:
        return Counts(labelled=self.stats.consumed // 2, unlabelled=1)


def test_every_process_says_it_is_up() -> None:
    got = _samples(ProcessMetrics("loop"))
    assert got[("slipstream_process_up", (("process", "loop"),))] == 1.0
    assert got[("slipstream_process_start_time_seconds", ())] <= time.time()


def test_engine_stages_by_feature_set_and_stage() -> None:
    metrics = ProcessMetrics("features")
    metrics.engine("fraud", "customer", StageStats(consumed=10, vectors=4, dead_lettered=1))
    metrics.engine("fraud", "terminal", StageStats(consumed=7, rows_written=3, last_batch_at=time.monotonic() - 5))
    metrics.engine("fraud", "customer", StageStats(consumed=12, vectors=5, dead_lettered=1))  # a later report
    got = _samples(metrics)
    customer = (("feature_set", "fraud"), ("stage", "customer"))
    terminal = (("feature_set", "fraud"), ("stage", "terminal"))
    assert got[("slipstream_engine_records_consumed_total", customer)] == 12
    assert got[("slipstream_engine_feature_vectors_total", customer)] == 5
    assert got[("slipstream_engine_dead_letters_total", customer)] == 1
    assert got[("slipstream_engine_online_rows_written_total", terminal)] == 3
    assert 5 <= got[("slipstream_engine_seconds_since_last_batch", terminal)] < 60


def test_a_host_is_read_live_with_its_handlers_counts() -> None:
    metrics = ProcessMetrics("outcomes")
    host = Host()
    metrics.host("outcomes", "0", host)
    host.stats.consumed, host.stats.produced = 8, 6
    got = _samples(metrics)
    worker = (("processor", "outcomes"), ("worker", "0"))
    assert got[("slipstream_processor_records_consumed_total", worker)] == 8
    assert got[("slipstream_processor_records_produced_total", worker)] == 6
    assert got[("slipstream_outcomes_labelled_total", (("worker", "0"),))] == 4
    assert got[("slipstream_outcomes_unlabelled_total", (("worker", "0"),))] == 1
    assert not [name for name, _ in got if name.endswith(("_ratio_total", "_join_total"))]
    host.stats.consumed = 20  # the next scrape sees the host as it is then
    assert _samples(metrics)[("slipstream_processor_records_consumed_total", worker)] == 20


def test_worker_snapshots_sit_beside_each_other() -> None:
    metrics = ProcessMetrics("shadow")
    metrics.snapshot("shadow", "0.0", {"consumed": 5, "partitions": (0, 1)}, {"compared": 3})
    metrics.snapshot("shadow", "0.1", {"consumed": 7, "partitions": (2,)}, {"compared": 4})
    got = _samples(metrics)
    assert got[("slipstream_processor_records_consumed_total", (("processor", "shadow"), ("worker", "0.1")))] == 7
    assert got[("slipstream_processor_partitions", (("processor", "shadow"), ("worker", "0.0")))] == 2
    assert got[("slipstream_shadow_compared_total", (("worker", "0.0"),))] == 3


def test_the_loop_by_decision() -> None:
    metrics = ProcessMetrics("loop")
    stats = LoopStats(records=40, decisions={"PROMOTE": 1, "RETRAIN": 2}, failures=1)
    metrics.loop(stats)
    got = _samples(metrics)
    assert got[("slipstream_loop_records_total", ())] == 40
    assert got[("slipstream_loop_failures_total", ())] == 1
    assert got[("slipstream_loop_decisions_total", (("decision", "RETRAIN"),))] == 2


def test_handler_counts_take_an_attribute_or_a_method() -> None:
    class WithAttr:
        counts = Counts(labelled=2)

    assert handler_counts(WithAttr()) == {"labelled": 2, "unlabelled": 0}
    assert handler_counts(Host()) == {"labelled": 0, "unlabelled": 1}
    assert handler_counts(None) == {}


def test_observed_and_reporting_wrap_any_host_factory() -> None:
    metrics = ProcessMetrics("drift")

    class Contracts:
        def topic(self, name: str) -> str:
            return f"p.{name}"

    made: list[Any] = []

    def factory(bootstrap: str, contracts: Any, **kwargs: Any) -> Host:
        made.append((bootstrap, kwargs))
        return Host()

    host = observed(factory, metrics, "w1", lag=False)("k:9092", Contracts(), processor_name="drift", group_id="g")
    host.stats.consumed = 3
    assert (
        _samples(metrics)[("slipstream_processor_records_consumed_total", (("processor", "drift"), ("worker", "w1")))]
        == 3
    )
    assert made == [("k:9092", {"processor_name": "drift", "group_id": "g"})]

    sent: list[tuple[Any, ...]] = []
    got = threading.Event()

    def put(message: tuple[Any, ...]) -> None:
        sent.append(message)
        got.set()

    reporting(factory, put, "w2", every_s=60)("k:9092", Contracts(), processor_name="drift", group_id="g")
    assert got.wait(5)
    kind, worker, processor, stats, counts = sent[0]
    assert (kind, worker, processor, stats["consumed"], counts) == (
        "progress",
        "w2",
        "drift",
        0,
        {"labelled": 0, "unlabelled": 1},
    )
