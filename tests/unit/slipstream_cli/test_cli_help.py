"""Every command explains itself: `--help` works and names its options."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from slipstream.cli import app

COMMANDS = [
    [],
    ["infra"],
    ["infra", "up"],
    ["infra", "status"],
    ["topics", "apply"],
    ["schemas", "check"],
    ["simulate", "fraud"],
    ["simulate", "reco"],
    ["produce"],
    ["tail"],
    ["features", "run"],
    ["features", "apply"],
    ["features", "verify"],
    ["backfill"],
    ["bench", "features"],
    ["train"],
    ["evaluate", "fraud"],
    ["evaluate", "reco"],
    ["models", "list"],
    ["models", "promote"],
    ["models", "rollback"],
    ["demo"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "root")
def test_help(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    assert "--help" in result.output


def test_bad_option_names_the_value() -> None:
    result = CliRunner().invoke(app, ["produce", "transactions", "--file", "x.parquet", "--on-error", "ignore"])
    assert result.exit_code != 0
    assert "ignore" in result.output
