"""`slipstream dead-letters`: bad input is one line naming the value, exit 2, before any work (the broker is dead)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slipstream.cli import app

DEAD = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "REDIS_URL": "redis://127.0.0.1:9/0", "COLUMNS": "200"}

BAD_INPUT = [
    (["list", "--error-type", "poison"], "--error-type: unknown 'poison'; known: undecodable, schema_mismatch"),
    (["list", "-e", "undecodable", "-e", "late"], "--error-type: unknown 'late'"),
    (["list", "--since", "yesterday"], "--since: 'yesterday' is neither an ISO-8601 time with a timezone nor relative"),
    (["list", "--until", "2026-01-01T00:00"], "--until: '2026-01-01T00:00' has no timezone"),
    (["list", "--since", "1h", "--until", "2h"], "--since '1h'"),
    (["list", "--reason-regex", "(unclosed"], "--reason-regex: '(unclosed' is not a regular expression"),
    (["list", "--topic", "trades"], "--topic: unknown topic 'trades'"),
    (["list", "--limit", "-1"], "--limit: must be >= 0, got -1"),
    (["show", "1-2"], "dead-letter id '1-2' is not partition:offset (e.g. 2:41)"),
    (["show", "x:1", "--quarantine"], "dead-letter id 'x:1' is not partition:offset"),
    (["redrive", "0:1", "2:x"], "dead-letter id '2:x' is not partition:offset"),
    (["redrive", "--error-type", "Undecodable"], "--error-type: unknown 'Undecodable'"),
    (["redrive", "--since", "2h ago"], "--since: '2h ago' is neither"),
    (["redrive", "--all", "--limit", "0"], "--limit: must be >= 1, got 0"),
    (["redrive"], "redrive: nothing chosen; give IDs, a filter (--error-type, --reason, --since, ...) or --all"),
    (["redrive", "--from-quarantine", "--dry-run"], "redrive: nothing chosen"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT, ids=lambda a: " ".join(a) if isinstance(a, list) else "")
def test_bad_input_is_one_line_before_any_work(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    started = time.monotonic()
    result = CliRunner().invoke(app, ["dead-letters", *args], env=DEAD | {"SLIPSTREAM_STATE_DIR": str(tmp_path)})
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [result.stderr.strip()]  # one line, no traceback
    assert result.stderr.startswith("error: ")
    assert message in result.stderr
    assert time.monotonic() - started < 10  # a command past its checks would wait for the dead broker
    assert list(tmp_path.iterdir()) == []


def test_the_group_explains_itself() -> None:
    result = CliRunner().invoke(app, ["dead-letters", "--help"], env={"COLUMNS": "160"})
    assert result.exit_code == 0
    for command in ("list", "show", "redrive"):
        assert command in result.output
    assert "dead-letter-quarantine" in result.output
