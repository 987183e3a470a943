"""The monitor on the real broker: predictions, comparisons, rank comparisons and outcomes produced to their topics,
read back to the end with read_committed; the realised figures equal the offline computation exactly, re-deliveries
count once, an aborted outcome transaction counts not at all; follow mode serves Prometheus metrics; the CLI prints
the summary as JSON."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from typing import Any

import orjson
import pytest
import typer
from confluent_kafka import Producer
from typer.testing import CliRunner

from slipstream.cli.monitor import monitor
from slipstream.monitoring.metrics import MonitorMetrics
from slipstream.monitoring.monitor import read_book
from slipstream.monitoring.performance import PerformanceBook
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.transport import EventProducer
from tests.conftest import Services
from tests.unit.monitoring.synthetic import CHAMPION, Stream, generate
from tests.unit.monitoring.test_performance import HORIZON, assert_equals_offline


def produce_stream(services: Services, contracts: Contracts, stream: Stream, *, redeliver: int = 0) -> None:
    """Scores with the idempotent producer (the first ``redeliver`` predictions twice, as at-least-once may);
    outcomes in a committed transaction, plus one aborted transaction holding an outcome that must never count."""
    producer = EventProducer(services.bootstrap_servers, contracts, linger_ms=20)
    for topic, records in (
        ("predictions", stream.predictions + stream.predictions[:redeliver]),
        ("shadow-comparisons", stream.comparisons),
        ("shadow-rankings", stream.rankings),
    ):
        for record in records:
            producer.send(topic, record)
    producer.flush()
    serde = contracts.serde("outcomes")
    tx = Producer({"bootstrap.servers": services.bootstrap_servers, "transactional.id": f"{serde.topic}-test"})
    tx.init_transactions()
    tx.begin_transaction()
    for record in stream.outcomes:
        tx.produce(serde.topic, serde.encode(record), contracts.key("outcomes", record))
    tx.commit_transaction()
    if not stream.outcomes:
        return
    tx.begin_transaction()
    ghost = dict(stream.outcomes[0]) | {"outcome_id": "ghost@3", "event_id": "ghost"}
    tx.produce(serde.topic, serde.encode(ghost), contracts.key("outcomes", ghost))
    tx.flush()
    tx.abort_transaction()


def test_realised_figures_from_kafka_equal_the_offline_computation(services: Services, contracts: Contracts) -> None:
    stream = generate(n=1500, days=10)
    produce_stream(services, contracts, stream, redeliver=100)
    book = read_book(services.bootstrap_servers, contracts)
    summary = book.summary()
    assert summary["records"]["predictions"] == len(stream.predictions) + 100
    assert summary["duplicates"]["predictions"] == 100
    assert summary["records"]["outcomes"] == len(stream.outcomes)  # the aborted one was never read
    assert summary["labels_without_prediction"] == 5
    assert assert_equals_offline(summary, stream, HORIZON) == 2 * (10 + 2 + 1)
    assert len(summary["rankings"]) == 1 + 2 + len({r["event_time"].date() for r in stream.rankings})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def test_follow_serves_metrics_and_sees_new_records(services: Services, contracts: Contracts) -> None:
    stream = generate(n=600, days=10)
    first = Stream(stream.predictions[:300], stream.comparisons[:300], stream.rankings, [], stream.truth, stream.now)
    produce_stream(services, contracts, first)
    metrics, port = MonitorMetrics(), _free_port()
    metrics.serve(port)
    refreshed: list[dict[str, Any]] = []
    done = threading.Event()

    def on_refresh(book: PerformanceBook) -> None:
        summary = book.summary(["all"])
        metrics.observe(summary)
        refreshed.append(summary)

    book = PerformanceBook()
    follower = threading.Thread(
        target=read_book,
        args=(services.bootstrap_servers, contracts),
        kwargs={"book": book, "follow": True, "refresh_s": 0.2, "on_refresh": on_refresh, "stop": done.is_set},
    )
    follower.start()
    try:
        label = f'model="fraud",role="CHAMPION",version="{CHAMPION}"'
        deadline = time.monotonic() + 60
        while _scrape(port).get(f"slipstream_monitor_predictions_total{{{label}}}") != 300.0:
            assert time.monotonic() < deadline, "the first 300 predictions never showed in the metrics"
            time.sleep(0.2)
        assert f"slipstream_monitor_realised_average_precision{{{label}}}" not in _scrape(port)  # no labels yet
        producer = EventProducer(services.bootstrap_servers, contracts)
        for record in stream.predictions[300:] + stream.outcomes:
            producer.send("outcomes" if "outcome_id" in record else "predictions", record)
        producer.flush()
        while _scrape(port).get(f"slipstream_monitor_predictions_total{{{label}}}") != 600.0:
            assert time.monotonic() < deadline, "the new predictions never showed in the metrics"
            time.sleep(0.2)
        deadline = time.monotonic() + 30
        while refreshed[-1]["records"]["outcomes"] < len(stream.outcomes):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        scraped = _scrape(port)
    finally:
        done.set()
        follower.join(timeout=30)
    (row,) = [r for r in refreshed[-1]["performance"] if r["model_version"] == CHAMPION]
    assert scraped[f"slipstream_monitor_realised_average_precision{{{label}}}"] == pytest.approx(
        row["average_precision"]
    )
    assert scraped[f"slipstream_monitor_label_coverage{{{label}}}"] == pytest.approx(row["label_coverage"])
    assert scraped['slipstream_shadow_agreement{model="fraud",version="4"}'] == pytest.approx(
        1 - [r for r in refreshed[-1]["performance"] if r["role"] == "CHALLENGER"][0]["flip_rate"]
    )
    assert scraped["slipstream_monitor_labels_without_prediction_total"] == 5.0
    assert 'slipstream_shadow_rank_kendall_tau{challenger_version="2",champion_version="1",model="reco"}' in scraped
    assert not follower.is_alive()


def test_monitor_json_prints_the_summary(services: Services, contracts: Contracts) -> None:
    stream = generate(n=300, days=4)
    produce_stream(services, contracts, stream)
    app = typer.Typer()
    app.command()(monitor)
    env = {"KAFKA_BOOTSTRAP_SERVERS": services.bootstrap_servers, "SLIPSTREAM_TOPIC_PREFIX": contracts.catalog.prefix}
    result = CliRunner().invoke(app, ["--json", "--by", "day"], env=env)
    assert result.exit_code == 0, result.output
    summary = orjson.loads(result.stdout)
    assert {r["period"] for r in summary["performance"]} == {"day"}
    assert sum(r["seen"] for r in summary["performance"] if r["model_version"] == CHAMPION) == 300
    table = CliRunner().invoke(app, [], env=env)
    assert table.exit_code == 0 and "realised performance" in table.stdout and CHAMPION in table.stdout
