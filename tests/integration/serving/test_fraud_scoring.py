"""The fraud scorer on the real broker, Redis and MLflow: HTTP and Kafka give the same score, equal to the offline
features; exact while the engine runs; the response and the prediction carry their lineage."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from slipstream.schemas.transport import EventConsumer
from slipstream.serving.http import create_app
from slipstream.serving.metrics import ScorerMetrics
from slipstream.serving.stream import ScoreStream
from tests.integration.serving.fixtures import FraudWorld, cli_env, offline_vectors, publish, run_engine
from tests.integration.serving.http_server import Client, running

pytestmark = pytest.mark.integration
MODEL_INPUT_TOL = 1e-9


def _iso(micros: int) -> str:
    return datetime.fromtimestamp(micros / 1e6, tz=UTC).isoformat()


def _body(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "transaction_id": record["transaction_id"],
        "customer_id": record["customer_id"],
        "terminal_id": record["terminal_id"],
        "amount": record["amount"],
        "event_time": _iso(record["event_time"]),
    }


def _predictions(world: FraudWorld, expected: int) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    with EventConsumer(world.services.bootstrap_servers, world.contracts, ["predictions"]) as consumer:
        idle = 0
        while len(out) < expected and idle < 20:
            batch = consumer.poll_batch(5000, 0.5)
            assert batch.failures == []
            for event in batch.events:
                out[str(event.value["event_id"])] = event.value
            idle = 0 if batch.events else idle + 1
    return out


@contextmanager
def score_stream(world: FraudWorld, *, until_idle_s: float = 4.0) -> Iterator[dict[str, Any]]:
    """``slipstream score-stream``'s runner on a thread, its group pinned to the topic's end before the block runs;
    after the block it runs until idle. Yields a dict that holds the final stats under "stats"."""
    app = world.app
    service = app.scoring_service(contracts=world.contracts, remember_recent=True, reco=False)
    producer = app.producer(linger_ms=0.5, contracts=world.contracts)
    consumer = app.consumer(
        ["transactions"],
        group_id=f"{world.contracts.catalog.prefix}scorer",
        from_beginning=False,
        dead_letters=producer,
        processor="score-stream",
        contracts=world.contracts,
    )
    service.start()
    stream = ScoreStream(service, consumer, producer)
    out: dict[str, Any] = {"metrics": service.metrics}
    go_idle = threading.Event()
    stop = threading.Event()

    def run() -> None:
        while not consumer.assigned.is_set() and not stop.is_set():
            stream.step(stop)
        go_idle.wait()
        out["stats"] = stream.run(stop, until_idle_s=until_idle_s)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert consumer.assigned.wait(30), "the scorer group was never assigned its partitions"
        yield out
        go_idle.set()
        thread.join(120)
    finally:
        stop.set()
        go_idle.set()
        thread.join(30)
        service.stop()
        consumer.close()


def test_http_and_kafka_give_the_same_score_with_the_offline_features(world: FraudWorld) -> None:
    # Each customer's first live transaction: the store holds exactly its history, for HTTP and Kafka alike.
    firsts: dict[int, dict[str, Any]] = {}
    for record in world.live_tx:
        firsts.setdefault(record["customer_id"], record)
    chosen = sorted(firsts.values(), key=lambda r: (r["event_time"], r["transaction_id"]))[:30]
    assert len(chosen) == 30
    offline = offline_vectors(world.history_tx + chosen, world.history_labels)

    service = world.app.scoring_service(contracts=world.contracts)
    with running(create_app(service)) as port:
        client = Client(port)
        status, ready = client.request("GET", "/readyz")
        assert status == 200, ready
        assert ready["models"]["fraud"] == {"loaded": True, "version": world.versions[0]}
        status, invalid = client.request("POST", "/v1/fraud/score", {**_body(chosen[0]), "amount": -5})
        assert status == 422 and "amount=-5" in invalid["detail"]
        status, invalid = client.request("POST", "/v1/fraud/score", {"customer_id": 1})
        assert status == 422 and {p["field"] for p in invalid["problems"]} >= {"transaction_id", "amount"}
        naive = {**_body(chosen[0]), "event_time": "2018-05-01T10:00:00"}
        status, invalid = client.request("POST", "/v1/fraud/score", naive)
        assert status == 422 and "timezone" in invalid["detail"], invalid
        http = {}
        for record in chosen:
            status, body = client.request("POST", "/v1/fraud/score", _body(record))
            assert status == 200, body
            http[record["transaction_id"]] = body
        client.close()

    loaded = world.registry.load_version("fraud", world.versions[0])
    for record in chosen:
        tid = record["transaction_id"]
        body = http[tid]
        assert body["model"] == {"name": "fraud", "version": world.versions[0]}
        assert body["prediction_id"] == f"{tid}@{world.versions[0]}"
        assert list(body["features"]) == list(loaded.feature_names)  # the model's order, the model's names
        for name, value in body["features"].items():
            assert value == pytest.approx(offline[tid][name], abs=MODEL_INPUT_TOL), name
        vector = np.array([[offline[tid][n] for n in loaded.feature_names]])
        assert body["score"] == pytest.approx(float(loaded.scorer.predict(vector)[0]), abs=1e-12)
        assert body["decision"] == (body["score"] >= loaded.threshold)
        customer = body["freshness"]["customer_spending"]
        assert customer["age_ms"] is not None and customer["age_ms"] > 0  # the newest history event came before
        assert body["timings_us"]["total_us"] > 0

    with score_stream(world) as result:
        publish(world.services, world.contracts, "transactions", chosen)
    stats = result["stats"]
    assert stats.scored == len(chosen)
    predictions = _predictions(world, len(chosen))
    assert set(predictions) == {str(r["transaction_id"]) for r in chosen}
    for record in chosen:
        tid = record["transaction_id"]
        prediction, body = predictions[str(tid)], http[tid]
        assert prediction["score"] == body["score"]
        assert prediction["features"] == body["features"]
        assert prediction["model_version"] == world.versions[0]
        assert prediction["prediction_id"] == body["prediction_id"]
        assert prediction["customer_id"] == record["customer_id"]
        assert prediction["terminal_id"] == record["terminal_id"]
        assert set(prediction["feature_freshness"]) == {"customer_spending", "terminal_risk"}
        customer_age = prediction["feature_freshness"]["customer_spending"]
        assert customer_age == pytest.approx(body["freshness"]["customer_spending"]["age_ms"])
        assert prediction["feature_age_ms"] >= 0
        assert prediction["received_at"] <= prediction["scored_at"]
        assert prediction["source_offset"] is not None


def _states_counted(metrics: ScorerMetrics) -> dict[str, float]:
    """The kept-state counters (a difference is what a run added: with Feast imported, prometheus_client runs in
    multi-process mode and a process's counters add up across registries)."""
    return {
        outcome: metrics.registry.get_sample_value("slipstream_stream_states_total", {"outcome": outcome}) or 0.0
        for outcome in ("reused", "rebuilt")
    }


def test_kafka_path_is_exact_while_the_engine_runs_beside_it(world: FraudWorld) -> None:
    """A whole live day (customers paying several times, seconds apart) scored while the engine is updating the
    same store: every prediction has the offline features, whoever got there first."""
    live = world.live_tx
    offline = offline_vectors(world.history_tx + live, world.history_labels)
    stop = threading.Event()
    engine = threading.Thread(target=run_engine, args=(world.services, world.contracts, world.project, stop))
    engine.start()
    try:
        with score_stream(world) as result:
            before = _states_counted(result["metrics"])
            publish(world.services, world.contracts, "transactions", live)
        stats = result["stats"]
    finally:
        stop.set()
        engine.join(60)
    assert stats.scored == len(live)
    after = _states_counted(result["metrics"])
    states = {outcome: after[outcome] - before[outcome] for outcome in after}
    assert states["reused"] + states["rebuilt"] == 2 * len(live)  # a customer and a terminal state per transaction
    assert states["rebuilt"] > 0
    predictions = _predictions(world, len(live))
    assert len(predictions) == len(live)
    repeat_customers = len(live) - len({r["customer_id"] for r in live})
    assert repeat_customers > 50  # the case the read-your-writes overlay exists for
    mismatches = [
        (tid, name)
        for tid, prediction in predictions.items()
        for name, value in prediction["features"].items()
        if abs(value - offline[int(tid)][name]) > MODEL_INPUT_TOL
    ]
    assert mismatches == []


def test_score_stream_command_scores_a_replayed_topic(world: FraudWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    """`slipstream score-stream --from-beginning --worker-id w0` over the whole topic (history and a live day), then
    again: the group resumes where it stopped, so the second run scores only what arrived since. The worker is a
    static member: it stays in the group after it stops, and the second run takes its partitions back under its id."""
    from confluent_kafka.admin import AdminClient
    from typer.testing import CliRunner

    from slipstream.cli import app as cli

    for name, value in cli_env(world.services, world.app, world.project).items():
        monkeypatch.setenv(name, value)
    day = world.live_tx[:100]
    publish(world.services, world.contracts, "transactions", day)
    args = ["score-stream", "--from-beginning", "--until-idle", "3", "--quiet", "--worker-id", "w0"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"{len(world.history_tx) + len(day):,}" in result.output  # scored: every transaction on the topic
    group = f"{world.app.settings.topic_prefix}slipstream-scorer-fraud"
    admin = AdminClient({"bootstrap.servers": world.services.bootstrap_servers})
    members = admin.describe_consumer_groups([group])[group].result(timeout=10).members
    assert [m.group_instance_id for m in members] == [f"{group}-worker-w0"]  # static: still there, until it returns

    offline = offline_vectors(world.history_tx + day, world.history_labels)
    predictions = _predictions(world, len(world.history_tx) + len(day))
    for record in day:
        prediction = predictions[str(record["transaction_id"])]
        assert prediction["model_version"] == world.versions[0]
        for name, value in prediction["features"].items():
            assert value == pytest.approx(offline[record["transaction_id"]][name], abs=MODEL_INPUT_TOL)

    more = world.live_tx[100:110]
    publish(world.services, world.contracts, "transactions", more)
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    total = len(world.history_tx) + len(day) + len(more)
    with EventConsumer(world.services.bootstrap_servers, world.contracts, ["predictions"]) as consumer:
        records, idle = 0, 0
        while idle < 6:
            got = len(consumer.poll_batch(5000, 0.5).events)
            records, idle = records + got, 0 if got else idle + 1
    assert records == total  # the second run resumed at its committed offsets: nothing scored twice


def test_serve_command_with_two_workers(world: FraudWorld) -> None:
    """`slipstream serve --workers 2`: each worker builds its scorer from the settings and answers with the champion;
    /metrics reports the two workers summed, whichever of them answers the scrape."""
    import os
    import subprocess
    import sys
    import time

    from tests.integration.serving.http_server import free_port

    env = {**os.environ, **cli_env(world.services, world.app, world.project)}
    port = free_port()
    cmd = [sys.executable, "-m", "slipstream", "serve", "--port", str(port), "--workers", "2", "--log-level", "warning"]
    log_path = world.app.settings.state_dir / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline, ready = time.monotonic() + 90, False
        while time.monotonic() < deadline and not ready:
            time.sleep(0.5)
            assert proc.poll() is None, log_path.read_text()
            try:
                client = Client(port)
                status, _ = client.request("GET", "/readyz")
                client.close()
                ready = status == 200
            except OSError:
                continue
        assert ready, "serve --workers 2 never became ready"
        versions = set()
        for record in world.live_tx[:40]:  # new connections: both workers get some
            client = Client(port)
            status, body = client.request("POST", "/v1/fraud/score", _body(record))
            client.close()
            assert status == 200, body
            versions.add(body["model"]["version"])
        assert versions == {world.versions[0]}
        # /metrics sums both workers, whichever answers: every scrape sees all 40 scores and the champion
        ok = 'slipstream_requests_total{endpoint="fraud",outcome="ok",path="http"}'
        champion = f'slipstream_model_info{{endpoint="fraud",model="fraud",version="{world.versions[0]}"}}'
        for _ in range(6):
            client = Client(port)
            status, text = client.request("GET", "/metrics")
            client.close()
            assert status == 200
            lines = dict(line.rsplit(" ", 1) for line in str(text).splitlines() if line and not line.startswith("#"))
            assert float(lines[ok]) == 40.0, {k: v for k, v in lines.items() if "requests" in k}
            assert float(lines[champion]) == 1.0
    finally:
        proc.terminate()
        proc.wait(30)
