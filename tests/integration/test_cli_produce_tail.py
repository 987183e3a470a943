"""A new user's path: `slipstream produce` 100,000 Avro transactions, read them back with `slipstream tail`
and with the Kafka console consumer from the same jars."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from slipstream.infra.config import PlatformConfig
from slipstream.infra.kafka_jars import ensure_jars
from slipstream.schemas.contracts import Contracts
from tests.conftest import KAFKA_VERSION, Services

pytestmark = pytest.mark.integration
N = 100_000


def _transactions(path: Path, n: int) -> None:
    rng = np.random.default_rng(7)
    start = pd.Timestamp("2018-04-01", tz="UTC")
    pd.DataFrame(
        {
            "transaction_id": np.arange(n, dtype=np.int64),
            "event_time": start + pd.to_timedelta(np.sort(rng.integers(0, 86_400 * 30, n)), unit="s"),
            "customer_id": rng.integers(0, 5_000, n),
            "terminal_id": rng.integers(0, 10_000, n),
            "amount": np.round(rng.gamma(2.0, 30.0, n), 2),
        }
    ).to_parquet(path)


def _cli(services: Services, prefix: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = os.environ | {
        "KAFKA_BOOTSTRAP_SERVERS": services.bootstrap_servers,
        "REDIS_URL": services.redis_url,
        "SLIPSTREAM_TOPIC_PREFIX": prefix,
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "slipstream", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_100k_transactions_produced_and_read_back_complete(
    services: Services, contracts: Contracts, tmp_path: Path
) -> None:
    path = tmp_path / "tx.parquet"
    _transactions(path, N)
    prefix = contracts.catalog.prefix

    produced = _cli(services, prefix, "produce", "transactions", "--file", str(path))
    assert produced.returncode == 0, produced.stderr
    assert f"sent {N:,} events to {prefix}transactions" in produced.stderr

    tailed = _cli(services, prefix, "tail", "transactions", "--count", "--idle-timeout", "5")
    assert tailed.returncode == 0, tailed.stderr
    assert json.loads(tailed.stdout) == {"topic": f"{prefix}transactions", "events": N, "failed": 0}

    sample_lines = _cli(services, prefix, "tail", "transactions", "--max", "3")
    assert sample_lines.returncode == 0, sample_lines.stderr
    first = json.loads(sample_lines.stdout.splitlines()[0])["value"]
    assert set(first) == {"transaction_id", "event_time", "customer_id", "terminal_id", "amount"}
    assert first["event_time"].endswith("+00:00")

    libs = services.kafka_libs or ensure_jars(PlatformConfig(kafka_version=KAFKA_VERSION))
    console = subprocess.run(
        [
            "java",
            "-Xmx256m",
            "-cp",
            f"{libs}/*",
            "org.apache.kafka.tools.consumer.ConsoleConsumer",
            "--bootstrap-server",
            services.bootstrap_servers,
            "--topic",
            f"{prefix}transactions",
            "--from-beginning",
            "--timeout-ms",
            "10000",
            "--formatter-property",
            "print.value=false",
            "--formatter-property",
            "print.key=true",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    match = re.search(r"Processed a total of (\d+) messages", console.stderr)
    assert match is not None, console.stderr[-2000:]
    assert int(match.group(1)) == N
    keys = [line for line in console.stdout.splitlines() if line.isdigit()]  # skip the tool's own notices
    assert len(keys) == N


def test_produce_names_the_bad_row_and_dead_letters_on_request(
    services: Services, contracts: Contracts, tmp_path: Path
) -> None:
    path = tmp_path / "bad.jsonl"
    good = {
        "transaction_id": 1,
        "event_time": "2018-04-01T00:00:31+00:00",
        "customer_id": 1,
        "terminal_id": 2,
        "amount": 10.0,
    }
    rows = [good, good | {"transaction_id": 2, "amount": -3.0}, good | {"transaction_id": 3}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    prefix = contracts.catalog.prefix

    failed = _cli(services, prefix, "produce", "transactions", "--file", str(path))
    assert failed.returncode == 1
    assert "row 1: invalid transaction: amount must be a finite number >= 0, got -3.0" in failed.stderr

    passed = _cli(services, prefix, "produce", "transactions", "--file", str(path), "--on-error", "dead-letter")
    assert passed.returncode == 0, passed.stderr
    assert "sent 2 events" in passed.stderr and "1 dead-lettered" in passed.stderr

    letters = _cli(services, prefix, "tail", "dead-letter", "--max", "1")
    letter = json.loads(letters.stdout.splitlines()[0])["value"]
    assert letter["error_type"] == "invalid_field"
    assert "amount must be a finite number >= 0, got -3.0" in letter["reason"]
