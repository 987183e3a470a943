"""The shadow consumer on the real broker and MLflow: challengers set and removed live, a SIGKILL mid-stream
(exactly once per challenger, read_committed; on both runtimes), and a new feature read from the feature log."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from slipstream.monitoring.shadow import ShadowWorker
from slipstream.processor_hosts import hosting
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.transport import EventProducer
from tests.conftest import Services
from tests.integration.monitoring.shadow_fixtures import (
    CHAMPION_FEATURES,
    NEW_FEATURES,
    committed,
    features,
    prediction,
    register,
    registry_at,
    running,
    settings,
    vector,
)

pytestmark = pytest.mark.integration


def _wait(condition: Callable[[], bool], what: str, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _send(services: Services, contracts: Contracts, topic: str, records: list[dict[str, object]]) -> None:
    with EventProducer(services.bootstrap_servers, contracts) as producer:
        for record in records:
            producer.send(topic, record)


def test_challengers_come_and_go_live(services: Services, contracts: Contracts, tmp_path: Path) -> None:
    registry = registry_at(tmp_path)
    champion, second, third = (register(registry, CHAMPION_FEATURES, seed) for seed in (1, 2, 3))
    registry.promote("fraud", champion)
    worker = ShadowWorker(services.bootstrap_servers, contracts, registry, settings())
    bootstrap = services.bootstrap_servers
    with running(worker), EventProducer(bootstrap, contracts) as events:

        def phase(first: int) -> list[dict[str, object]]:
            batch = [prediction(i, champion) for i in range(first, first + 50)]
            _send(services, contracts, "predictions", batch)
            _wait(lambda: worker.stats.consumed >= first + 50, f"predictions {first}..{first + 49} consumed")
            return batch

        phase(0)  # no challenger yet
        registry.set_challenger("fraud", second, "challenger", events)
        assert worker.challengers.wait_for(lambda s: [c.version for c in s] == [second], 60)
        phase(50)
        registry.set_challenger("fraud", third, "challenger-b", events)
        assert worker.challengers.wait_for(lambda s: len(s) == 2, 60)
        phase(100)
        registry.remove_challenger("fraud", "challenger", events)
        assert worker.challengers.wait_for(lambda s: [c.version for c in s] == [third], 60)
        phase(150)
    got = committed(bootstrap, contracts, "shadow-comparisons")
    pairs = Counter((int(r["event_id"]), r["challenger_version"], r["challenger_alias"]) for r in got)
    expected = {(i, second, "challenger") for i in range(50, 150)} | {
        (i, third, "challenger-b") for i in range(100, 200)
    }
    assert set(pairs) == expected
    assert max(pairs.values()) == 1
    # the scores are the challenger's own ONNX scores of the champion's exact vector
    model = registry.load_version("fraud", second)
    by_event = {int(r["event_id"]): r for r in got if r["challenger_version"] == second}
    x = np.array([[features(i)[n] for n in model.feature_names] for i in range(50, 150)])
    assert [by_event[i]["challenger_score"] for i in range(50, 150)] == model.scorer.predict(x).tolist()
    assert all(r["feature_source"] == "PREDICTION" for r in got)
    assert worker.challengers.refused == []


def _shadow_process(bootstrap: str, prefix: str, state: str, runtime: str) -> None:
    """A shadow worker in a process of its own (the test SIGKILLs it), stopped by SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    chosen = settings(max_batch=40, runtime=runtime)
    registry = registry_at(Path(state))
    worker = ShadowWorker(bootstrap, Contracts.default(prefix), registry, chosen, host=hosting(runtime))
    worker.run(stop)


def test_a_sigkill_mid_stream_compares_each_prediction_once(
    services: Services, contracts: Contracts, tmp_path: Path, runtime: str
) -> None:
    registry = registry_at(tmp_path)
    champion, second, third = (register(registry, CHAMPION_FEATURES, seed) for seed in (1, 2, 3))
    registry.promote("fraud", champion)
    registry.set_challenger("fraud", second, "challenger")
    registry.set_challenger("fraud", third, "challenger-b")
    n = 3000
    _send(services, contracts, "predictions", [prediction(i, champion) for i in range(300)])
    ctx = mp.get_context("spawn")
    args = (services.bootstrap_servers, contracts.catalog.prefix, str(tmp_path), runtime)
    first = ctx.Process(target=_shadow_process, args=args)
    first.start()
    _wait(lambda: len(committed(services.bootstrap_servers, contracts, "shadow-comparisons", 1)) >= 200, "a start")

    def stream() -> None:  # the rest flows in while the worker is killed
        with EventProducer(services.bootstrap_servers, contracts) as producer:
            for i in range(300, n):
                producer.send("predictions", prediction(i, champion))
                if i % 50 == 0:
                    producer.flush()
                    time.sleep(0.02)

    flowing = threading.Thread(target=stream)
    flowing.start()
    time.sleep(0.5)
    assert first.pid is not None
    os.kill(first.pid, signal.SIGKILL)
    first.join(10)
    flowing.join()
    seen = len(committed(services.bootstrap_servers, contracts, "shadow-comparisons", 1))
    assert 0 < seen < 2 * n, f"killed after {seen} comparisons"
    second_run = ctx.Process(target=_shadow_process, args=args)
    second_run.start()
    try:
        _wait(
            lambda: len(committed(services.bootstrap_servers, contracts, "shadow-comparisons", 1)) >= 2 * n,
            "every comparison after the restart",
            timeout_s=180,
        )
    finally:
        second_run.terminate()
        second_run.join(30)
    got = committed(services.bootstrap_servers, contracts, "shadow-comparisons")
    ids = Counter(r["comparison_id"] for r in got)
    assert [k for k, c in ids.items() if c > 1] == []  # 0 duplicates
    expected = {f"{i}@{champion}~{v}" for i in range(n) for v in (second, third)}
    assert set(ids) == expected  # 0 lost
    assert second_run.exitcode == 0


def test_a_new_feature_is_read_from_the_feature_log(services: Services, contracts: Contracts, tmp_path: Path) -> None:
    registry = registry_at(tmp_path)
    champion, needy = register(registry, CHAMPION_FEATURES, 1), register(registry, NEW_FEATURES, 2)
    registry.promote("fraud", champion)
    registry.set_challenger("fraud", needy, "challenger")
    # half the vectors before their predictions, half after; one event never gets its vector
    _send(services, contracts, "feature-log", [vector(i) for i in range(0, 100)])
    _send(services, contracts, "predictions", [prediction(i, champion) for i in range(0, 200)])
    _send(services, contracts, "feature-log", [vector(i) for i in range(100, 200) if i != 150])
    worker = ShadowWorker(services.bootstrap_servers, contracts, registry, settings())
    with running(worker):
        _wait(lambda: worker.handler.counts.compared >= 199, "199 comparisons")
        # event time moves 2 minutes on (past the 60 s span): the prediction left without its vector is let go
        # (a vector of the same customer, 53, so of the same partition, 126 s of event time later)
        _send(services, contracts, "feature-log", [vector(150 + 97 * 130)])
        _wait(lambda: worker.handler.counts.dead_lettered >= 1, "the dead letter of prediction 150")
    got = committed(services.bootstrap_servers, contracts, "shadow-comparisons")
    assert sorted(int(r["event_id"]) for r in got) == [i for i in range(200) if i != 150]
    assert all(r["feature_source"] == "FEATURE_LOG" for r in got)
    model = registry.load_version("fraud", needy)
    x = np.array([[features(i)[n] for n in NEW_FEATURES] for i in range(200) if i != 150])
    by_event = {int(r["event_id"]): r["challenger_score"] for r in got}
    assert [by_event[i] for i in range(200) if i != 150] == model.scorer.predict(x).tolist()
    dead = [d for d in committed(services.bootstrap_servers, contracts, "dead-letter") if d["processor"] == "shadow"]
    assert [d["error_type"] for d in dead] == ["feature_vector_missing"]
    assert contracts.serde("predictions").decode(dead[0]["original_value"])["prediction_id"] == f"150@{champion}"
