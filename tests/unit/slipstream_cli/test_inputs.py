"""Bad input at the command line: every command that reads files checks paths, formats, columns and option values
before it does any work, and says what is wrong in one line (exit 2); `--help` lists the columns it expects.

The command-level tests point Kafka and Redis at a port nothing listens on: a command that got past its checks
would fail there (exit 1, after a timeout), so exit 2 in well under a second shows no work was started; the state
directory, the output files and the Feast repository are checked not to exist too.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from slipstream.cli import app
from slipstream.cli.inputs import check_input, check_output_dir, check_output_file, input_specs, spec
from slipstream.cli.options import check_choice, check_choices, check_date, check_number
from slipstream.exceptions import InputError
from slipstream.features.definitions import feature_sets
from slipstream.features.offline.inputs import plan_topics
from slipstream.schemas.registry import CURRENT_DIR
from slipstream.schemas.topics import TopicCatalog
from tests.samples import sample

DEAD = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "REDIS_URL": "redis://127.0.0.1:9/0", "COLUMNS": "200"}


def _write(path: Path, records: list[dict[str, Any]]) -> Path:
    pd.DataFrame(records).to_parquet(path, index=False)
    return path


@pytest.fixture
def tx(tmp_path: Path) -> Path:
    """Transactions with the simulator's ground truth, labels beside them (``tx.labels.parquet``)."""
    _write(tmp_path / "tx.labels.parquet", [sample("label", i) for i in range(3)])
    return _write(tmp_path / "tx.parquet", [sample("transaction", i) | {"tx_fraud": i % 2} for i in range(3)])


# ------------------------------------------------------------------------------------------------ the checks alone
def test_missing_file_is_named_with_its_option(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^--events: '.*nope\.parquet' does not exist$"):
        check_input(tmp_path / "nope.parquet", spec("verify:transactions"), "--events")


def test_wrong_suffix_is_named(tmp_path: Path) -> None:
    path = tmp_path / "tx.csv"
    path.write_text("transaction_id\n1\n")
    with pytest.raises(InputError, match=r"^--events: '.*tx\.csv' must be a \.parquet file, it has '\.csv'$"):
        check_input(path, spec("verify:transactions"), "--events")


def test_a_directory_or_a_non_parquet_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dir.parquet").mkdir()
    with pytest.raises(InputError, match="is a directory, not a file"):
        check_input(tmp_path / "dir.parquet", spec("verify:transactions"), "--events")
    (tmp_path / "text.parquet").write_text("not parquet")
    with pytest.raises(InputError, match=r"^--events: '.*text\.parquet' is not a readable parquet file \("):
        check_input(tmp_path / "text.parquet", spec("verify:transactions"), "--events")


def test_missing_column_is_named_with_what_the_file_has(tmp_path: Path) -> None:
    path = _write(tmp_path / "tx.parquet", [{k: v for k, v in sample("transaction").items() if k != "amount"}])
    with pytest.raises(InputError, match=r"lacks column 'amount' \(transactions events\); it has: transaction_id, "):
        check_input(path, spec("verify:transactions"), "--events")


def test_column_of_the_wrong_type_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path / "tx.parquet", [sample("transaction") | {"amount": "lots"}])
    with pytest.raises(InputError, match=r"column 'amount' is string, expected double$"):
        check_input(path, spec("verify:transactions"), "--events")


def test_training_and_verify_inputs_take_times_as_time_columns_only(tmp_path: Path) -> None:
    """``produce`` takes integer epoch microseconds; the commands that compute on the times with pandas do not."""
    record = sample("transaction") | {"event_time": 1_700_000_000_000_000}
    path = _write(tmp_path / "tx.parquet", [record])
    check_input(path, spec("events:transactions"), "--file")
    with pytest.raises(InputError, match=r"column 'event_time' is int64, expected timestamp \(tz-aware\)$"):
        check_input(path, spec("verify:transactions"), "--events")


def test_naive_timestamps_are_refused_unless_read_as_utc(tmp_path: Path) -> None:
    naive = sample("transaction") | {"event_time": sample("transaction")["event_time"].replace(tzinfo=None)}
    path = _write(tmp_path / "tx.parquet", [naive])
    with pytest.raises(InputError, match=r"column 'event_time' holds naive timestamps; .* or pass --assume-utc$"):
        check_input(path, spec("events:transactions"), "--file", assume_utc=False)
    assert check_input(path, spec("events:transactions"), "--file", assume_utc=True) == path
    with pytest.raises(InputError, match=r"holds naive timestamps; write them timezone-aware$"):
        check_input(path, spec("verify:transactions"), "--events")


def test_json_lines_are_checked_by_their_first_record(tmp_path: Path) -> None:
    path = tmp_path / "tx.jsonl"
    path.write_text('\n{"transaction_id": 1, "event_time": "2018-04-01T00:00:00+00:00"}\n')
    with pytest.raises(InputError, match=r"lacks columns 'customer_id', 'terminal_id', 'amount'"):
        check_input(path, spec("events:transactions"), "--file")
    path.write_text("{not json\n")
    with pytest.raises(InputError, match=r"line 1 is not valid JSON"):
        check_input(path, spec("events:transactions"), "--file")


def test_option_values_are_named() -> None:
    with pytest.raises(InputError, match=r"^--on-error: 'ignore' is not one of fail, dead-letter$"):
        check_choice("ignore", ("fail", "dead-letter"), "--on-error")
    with pytest.raises(InputError, match=r"^--parts: unknown 'bogus' in 'online,bogus'; choose from online,push$"):
        check_choices("online,bogus", ("online", "push"), "--parts")
    with pytest.raises(InputError, match=r"^--days: must be > 0, got 0.0$"):
        check_number(0.0, "--days", gt=0)
    with pytest.raises(InputError, match=r"^--rate: must be > 0, got nan$"):
        check_number(float("nan"), "--rate", gt=0)
    with pytest.raises(InputError, match=r"^--start-date: '2018-13-01' is not an ISO date"):
        check_date("2018-13-01", "--start-date")
    assert check_choices(" online , push", ("online", "push"), "--parts") == ("online", "push")


def test_outputs_are_checked_before_writing(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^--out: '.*x\.csv' must be a \.parquet file"):
        check_output_file(tmp_path / "x.csv", "--out")
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match=r"exists and is not a directory$"):
        check_output_dir(tmp_path / "file", "--out")
    with pytest.raises(InputError, match=r"cannot create '.*file/sub': '.*file' is not a directory$"):
        check_output_file(tmp_path / "file" / "sub" / "x.parquet", "--out")
    assert check_output_file(tmp_path / "new" / "x.parquet", "--out") == tmp_path / "new" / "x.parquet"
    assert not (tmp_path / "new").exists()


# ------------------------------------------------------------------------------------------- the table of inputs
def test_every_contract_topic_has_its_fields_as_columns() -> None:
    declared = {s.name: s.value_schema for s in TopicCatalog() if s.value_schema is not None}
    for topic, schema in declared.items():
        fields = json.loads((CURRENT_DIR / f"{schema}.avsc").read_text())["fields"]
        columns = spec(f"events:{topic}").columns
        assert [c.name for c in columns] == [f["name"] for f in fields], topic
        assert [c.required for c in columns] == ["default" not in f for f in fields], topic
    assert {k.removeprefix("events:") for k in input_specs() if k.startswith("events:")} == set(declared)


def test_every_feature_set_topic_has_the_columns_the_offline_engine_reads() -> None:
    for name, chosen in feature_sets().items():
        for topic, plan in plan_topics(chosen).items():
            assert [c.name for c in spec(f"{name}:{topic}").columns] == list(plan.columns), (name, topic)
    assert str(spec("fraud:transactions").columns[1]) == "event_time timestamp"
    assert "tx_fraud" in [c.name for c in spec("training:transactions").columns]


# --------------------------------------------------------------------------------------------------- the commands
def _invoke(args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, float]:
    monkeypatch.chdir(tmp_path)
    env = DEAD | {"SLIPSTREAM_STATE_DIR": str(tmp_path / "state"), "SLIPSTREAM_FEAST_REPO_DIR": str(tmp_path / "feast")}
    started = time.monotonic()
    result = CliRunner().invoke(app, args, env=env)
    return result.exit_code, result.stderr, time.monotonic() - started


BAD_INPUT = [
    (["backfill", "--events", "nope.parquet"], "--events: 'nope.parquet' does not exist"),
    (["backfill", "--events", "tx.parquet", "--labels", "/nonexistent"], "--labels: '/nonexistent' does not exist"),
    (["backfill", "--events", "tx.parquet", "-s", "nope"], "--feature-set: unknown feature set 'nope'; known: fraud"),
    (["backfill", "--events", "tx.parquet", "--out", "tx.parquet"], "--out: 'tx.parquet' exists and is not a dir"),
    (["features", "verify", "--events", "tx.labels.parquet"], "--events: 'tx.labels.parquet' lacks column 'amount'"),
    (["features", "verify", "--events", "tx.parquet", "--days", "-1"], "--days: must be > 0, got -1.0"),
    (["evaluate", "fraud", "--data", "typo.parquet"], "--data: 'typo.parquet' does not exist"),
    (["evaluate", "fraud", "--data", "tx.parquet", "--label-delay", "soon"], "--label-delay: 'soon' is not one of"),
    (["produce", "transaction", "-f", "tx.parquet"], "TOPIC: 'transaction' has no event contract; topics that take"),
    (["produce", "transactions", "-f", "tx.parquet", "--on-error", "ignore"], "--on-error: 'ignore' is not one of"),
    (["produce", "labels", "-f", "tx.parquet"], "--file: 'tx.parquet' lacks columns 'tx_event_time', 'is_fraud'"),
    (["produce", "transactions", "-f", "tx.parquet", "--rate", "0"], "--rate: must be > 0, got 0.0"),
    (["train", "--train-window", "2018-08-01", "2018-07-01"], "--train-window: START '2018-08-01' must be before"),
    (["train", "--data", "typo.parquet"], "--data: 'typo.parquet' does not exist"),
    (["bench", "features", "--data", "tx.parquet", "--parts", "online,bogus"], "--parts: unknown 'bogus'"),
    (["bench", "e2e", "--rates", "1000,-5"], "--rates: expected rates > 0, got '1000,-5'"),
    (["simulate", "fraud", "--out", "sim.csv"], "--out: 'sim.csv' must be a .parquet file, it has '.csv'"),
    (["simulate", "fraud", "--out", "sim.parquet", "--customers", "1"], "--customers must be an integer >= 3"),
    (["topics", "delete", "--prefix", ""], "--prefix: refusing an empty prefix"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT, ids=lambda a: " ".join(a) if isinstance(a, list) else "")
def test_bad_input_is_one_line_before_any_work(
    args: list[str], message: str, tx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = sorted(p.name for p in tmp_path.iterdir())
    code, stderr, seconds = _invoke(args, tmp_path, monkeypatch)
    assert code == 2, stderr
    assert stderr.splitlines() == [f"error: {stderr.removeprefix('error: ').strip()}"]  # one line, no traceback
    assert message in stderr
    assert seconds < 20  # a command past its checks would wait for the dead broker (30 s and more)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no state dir, Feast repo, output or simulation


def test_valid_input_passes_the_checks(tx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, stderr, _ = _invoke(["backfill", "--events", "tx.parquet", "--out", "offline"], tmp_path, monkeypatch)
    assert code == 0, stderr
    assert "6 events → 3 vectors" in stderr  # 3 transactions and their 3 labels
    assert sorted(p.name for p in (tmp_path / "offline").iterdir()) == [
        "customer_spending.parquet",
        "feature_vectors.parquet",
        "terminal_risk.parquet",
    ]


def test_features_verify_without_labels_names_the_file_it_looked_for(
    tx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tx.labels.parquet").unlink()
    code, stderr, _ = _invoke(["features", "verify", "--events", "tx.parquet"], tmp_path, monkeypatch)
    assert code == 2
    assert stderr.strip() == "error: --labels (default: beside --events): 'tx.labels.parquet' does not exist"
    assert not (tmp_path / "feast").exists()
    assert not (tmp_path / "state").exists()


def test_topics_delete_refuses_a_bad_prefix_or_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, stderr, _ = _invoke(["topics", "delete", "--prefix", "a b"], tmp_path, monkeypatch)
    assert code == 2
    assert "--prefix: topic prefix 'a b' may only contain" in stderr
    code, stderr, _ = _invoke(
        ["topics", "delete", "--prefix", "x.", "--redis-project", "no-dash"], tmp_path, monkeypatch
    )
    assert code == 2
    assert "--redis-project: 'no-dash' is not a Feast project name" in stderr


HELP = [
    (["produce"], ["--file: transactions events (.parquet/.jsonl/.ndjson): transaction_id long", "action VIEW|"]),
    (["backfill"], ["--events (-s fraud): transactions events", "--labels (-s fraud):", "is_fraud boolean"]),
    (["features", "verify"], ["--events: transactions events (.parquet)", "tx_event_time timestamp"]),
    (["evaluate", "fraud"], ["--data: transactions with tx_fraud (.parquet)", "tx_fraud 0/1"]),
    (["train"], ["--data: transactions with tx_fraud (.parquet)", "is_fraud boolean"]),
    (["bench", "features"], ["--data: transactions with tx_fraud (.parquet)", "timezone-aware"]),
]


@pytest.mark.parametrize(("command", "expected"), HELP, ids=lambda c: " ".join(c) if c and c[0][0] != "-" else "")
def test_help_lists_the_input_columns(command: list[str], expected: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "Input files" in result.output
    for text in expected:
        assert text in result.output, text
