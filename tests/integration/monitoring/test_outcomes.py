"""`slipstream outcomes` on the real broker, on both runtimes: labels before and after their predictions, a SIGKILL
mid-stream, the horizon — every prediction and challenger score answered exactly once (read_committed)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from slipstream.schemas.contracts import Contracts
from slipstream.schemas.transport import EventConsumer, EventProducer
from tests.conftest import Services
from tests.samples import sample

T0 = datetime(2026, 1, 1, tzinfo=UTC)
N_EVENTS = 1500


def _stream(seed: int = 3) -> tuple[list[tuple[str, dict[str, Any]]], set[str], set[str], set[str]]:
    """Predictions, comparisons and labels; the ids that must end LABELLED, UNLABELLED and as orphan labels."""
    rng = random.Random(seed)
    records: list[tuple[str, dict[str, Any]]] = []
    labelled: set[str] = set()
    unlabelled: set[str] = set()
    orphans: set[str] = set()
    for eid in range(N_EVENTS):
        t = T0 + timedelta(minutes=10 * eid)  # ~10 days of events
        customer = rng.randrange(200)
        has_prediction, has_label = rng.random() < 0.95, rng.random() < 0.7
        ids = []
        if has_prediction:
            p = sample("prediction") | {
                "prediction_id": f"{eid}@1",
                "event_id": str(eid),
                "customer_id": customer,
                "model_version": "1",
                "score": rng.random(),
                "event_time": t,
            }
            records.append(("predictions", p))
            ids.append(f"{eid}@1")
            if rng.random() < 0.5:
                c = sample("shadow_comparison") | {
                    "comparison_id": f"{eid}@1~2",
                    "prediction_id": f"{eid}@1",
                    "event_id": str(eid),
                    "customer_id": customer,
                    "event_time": t,
                    "challenger_version": "2",
                    "challenger_score": rng.random(),
                }
                records.append(("shadow-comparisons", c))
                ids.append(f"{eid}@2")
        if has_label:
            delay = timedelta(hours=rng.uniform(0.0, 72.0))
            label = sample("label") | {
                "transaction_id": eid,
                "customer_id": customer,
                "tx_event_time": t,
                "event_time": t + delay,
                "is_fraud": rng.random() < 0.1,
            }
            # a quarter of the labels are published before their prediction
            records.insert(len(records) - len(ids) if rng.random() < 0.25 else len(records), ("labels", label))
        (labelled if has_label else unlabelled).update(ids)
        if has_label and not ids:
            orphans.add(f"label:{eid}")
    return records, labelled, unlabelled, orphans


def _outcomes(services: Services, contracts: Contracts, quiet_polls: int = 3) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    with EventConsumer(
        services.bootstrap_servers, contracts, ["outcomes"], config={"isolation.level": "read_committed"}
    ) as reader:
        quiet = 0
        while quiet < quiet_polls:
            batch = reader.poll_batch(5000, 0.5)
            got.extend(e.value for e in batch.events)
            quiet = 0 if batch.events else quiet + 1
    return got


def _command(services: Services, contracts: Contracts, runtime: str, *args: str) -> subprocess.Popen[str]:
    env = os.environ | {
        "KAFKA_BOOTSTRAP_SERVERS": services.bootstrap_servers,
        "REDIS_URL": services.redis_url,
        "SLIPSTREAM_TOPIC_PREFIX": contracts.catalog.prefix,
        "SLIPSTREAM_LABEL_HORIZON_DAYS": "20",
        "SLIPSTREAM_LABEL_GRACE_DAYS": "1",
    }
    cmd = [sys.executable, "-m", "slipstream", "outcomes", "--runtime", runtime, *args]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_every_score_is_answered_once_across_a_sigkill(services: Services, contracts: Contracts, runtime: str) -> None:
    records, labelled, unlabelled, orphans = _stream()
    first = _command(services, contracts, runtime)
    seen = 0
    with EventProducer(services.bootstrap_servers, contracts) as producer:
        chunk = len(records) // 10
        for i in range(10):
            for topic, record in records[i * chunk : (i + 1) * chunk if i < 9 else len(records)]:
                producer.send(topic, record)
            producer.flush()
            if i == 4:  # half the stream is out: wait for the joiner to have committed some, then kill it
                deadline = time.monotonic() + 120
                while seen == 0 and time.monotonic() < deadline:
                    assert first.poll() is None, first.stdout.read() if first.stdout else ""
                    seen = len(_outcomes(services, contracts, quiet_polls=1))
                first.send_signal(signal.SIGKILL)
                first.communicate(timeout=10)
            time.sleep(0.2)
    assert 0 < seen < len(labelled), f"killed after {seen} outcomes"

    second = _command(services, contracts, runtime, "--until-idle", "4")
    text, _ = second.communicate(timeout=180)
    assert second.returncode == 0, text
    assert "state entries restored" in text
    assert f"{runtime} runtime" in text
    got = _outcomes(services, contracts)
    counts = Counter(o["outcome_id"] for o in got)
    assert [k for k, n in counts.items() if n > 1] == []
    missing = labelled - {o["outcome_id"] for o in got if o["status"] == "LABELLED"}
    assert not missing, (len(missing), sorted(missing)[:10], text)
    assert {o["outcome_id"] for o in got if o["status"] == "LABELLED"} == labelled
    assert len(got) == len(labelled)  # nothing is past its horizon yet: the rest waits in the join state
    assert all(o["label_delay_ms"] == (o["label_time"] - o["event_time"]) / timedelta(milliseconds=1) for o in got)

    # Event time moves 40 days on (one prediction per customer): everything still waiting is written as such.
    with EventProducer(services.bootstrap_servers, contracts) as producer:
        for customer in range(200):
            late = T0 + timedelta(days=40)
            producer.send(
                "predictions",
                sample("prediction")
                | {"prediction_id": f"clock-{customer}@1", "event_id": f"clock-{customer}", "customer_id": customer}
                | {"event_time": late},
            )
        producer.flush()
    third = _command(services, contracts, runtime, "--until-idle", "4")
    text, _ = third.communicate(timeout=180)
    assert third.returncode == 0, text
    got = _outcomes(services, contracts)
    by_status: dict[str, set[str]] = {}
    for o in got:
        by_status.setdefault(o["status"], set()).add(o["outcome_id"])
    assert len(got) == len(labelled) + len(unlabelled) + len(orphans)
    assert by_status == {"LABELLED": labelled, "UNLABELLED_AT_HORIZON": unlabelled, "LABEL_WITHOUT_PREDICTION": orphans}
