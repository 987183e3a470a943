"""`slipstream monitor` and `report` refuse bad options with one line naming the value, before touching Kafka;
the table shows every row of a summary."""

from __future__ import annotations

import typer
from rich.console import Console
from typer.testing import CliRunner

from slipstream.cli.monitor import monitor, report, summary_table
from slipstream.monitoring.performance import PerformanceBook
from tests.unit.monitoring.synthetic import generate


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(monitor)
    app.command()(report)
    return app


def _fails(args: list[str], *fragments: str) -> None:
    result = CliRunner().invoke(_app(), args, env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert result.exit_code == 2, result.output
    line = " ".join(result.output.split())
    for fragment in fragments:
        assert fragment in line, (fragment, line)


def test_bad_options_give_one_line_naming_the_value() -> None:
    _fails(["monitor", "--by", "month"], "--by", "'month'", "day, week, all")
    _fails(["monitor", "--metrics-port", "9100"], "--metrics-port 9100", "--follow")
    _fails(["monitor", "--follow", "--metrics-port", "70000"], "70000")
    _fails(["monitor", "--refresh", "0"], "--refresh", "0")
    _fails(["monitor", "--retain-days", "-3"], "--retain-days", "-3")
    _fails(["report", "--out", "plots.png"], "--out", "plots.png")
    _fails(["report", "--out", "/no/such/folder/r.html"], "/no/such/folder")


def test_table_shows_every_version_and_the_estimate() -> None:
    stream = generate(n=400)
    book = PerformanceBook()
    for records in (stream.predictions, stream.comparisons, stream.outcomes, stream.rankings):
        book.update_all(records)
    console = Console(width=250, record=True)
    console.print(summary_table(book.summary(["all"])))
    text = console.export_text()
    assert "CHAMPION" in text and "CHALLENGER" in text and "est. AP" in text
    assert "labels without prediction 5" in text and "overlap@k" in text


def test_the_cli_names_the_periods_the_book_knows() -> None:
    from slipstream.cli.monitor import PERIODS as CLI_PERIODS
    from slipstream.monitoring.figures import PERIODS

    assert CLI_PERIODS == PERIODS
