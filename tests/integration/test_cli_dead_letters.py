"""`slipstream dead-letters list | show | redrive` on a real broker, through the CLI."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from slipstream.cli import app
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.dead_letter import RawMessage
from slipstream.schemas.transport import EventProducer
from tests.conftest import Services
from tests.samples import sample

pytestmark = pytest.mark.integration


def test_list_show_and_redrive_through_the_cli(services: Services, contracts: Contracts) -> None:
    topic = contracts.topic("transactions")
    good = contracts.serde("transactions").encode(sample("transaction", 7))
    with EventProducer(services.bootstrap_servers, contracts) as producer:
        usable = RawMessage(topic, 2, 10, 1_700_000_000_000, b"603", good, (("trace", b"x"),))
        producer.dead_letter(usable, error_type="invalid_value", reason="amount 57.16 refused", processor="score")
        poison = RawMessage(topic, 4, 11, 1_700_000_000_001, b"604", good[: len(good) // 2], ())
        producer.dead_letter(poison, error_type="schema_mismatch", reason="truncated", processor="fraud-v1")
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": services.bootstrap_servers,
        "REDIS_URL": services.redis_url,
        "SLIPSTREAM_TOPIC_PREFIX": contracts.catalog.prefix,
        "COLUMNS": "200",
    }

    def cli(*args: str, code: int = 0) -> Any:
        result = CliRunner().invoke(app, ["dead-letters", *args], env=env)
        assert result.exit_code == code, result.output
        return result

    listed = orjson.loads(cli("list", "--json").stdout)
    assert listed["topic"] == contracts.topic("dead-letter")
    assert listed["counts"] == {
        "total": 2,
        "by_error_type": {"invalid_value": 1, "schema_mismatch": 1},
        "by_processor": {"score": 1, "fraud-v1": 1},
    }
    ids = {letter["error_type"]: letter["id"] for letter in listed["letters"]}
    assert [x["id"] for x in orjson.loads(cli("list", "-e", "invalid_value", "--json").stdout)["letters"]] == [
        ids["invalid_value"]
    ]
    assert orjson.loads(cli("list", "--reason", "TRUNC", "--json").stdout)["counts"]["total"] == 1
    assert orjson.loads(cli("list", "--until", "1h", "--json").stdout)["counts"]["total"] == 0
    table = cli("list").stdout
    assert "2 envelopes — by error type: invalid_value 1, schema_mismatch 1" in table
    assert f"{topic}:2:10" in table and "amount 57.16 refused" in table

    shown = cli("show", ids["invalid_value"]).stdout
    assert "the original decodes with today's contracts" in shown and '"customer_id": 603' in shown
    broken = cli("show", ids["schema_mismatch"]).stdout
    assert "the original does not decode: schema_mismatch" in broken
    assert "00000000  c3 01" in broken  # the hexdump of the first bytes
    as_json = orjson.loads(cli("show", ids["schema_mismatch"], "--json").stdout)
    assert as_json["envelope"]["source_offset"] == 11 and as_json["original"]["decoded"] is None
    missing = cli("show", "0:999999", code=1)
    assert "no envelope at '0:999999'" in missing.stderr

    dry = cli("redrive", "-e", "invalid_value", "--dry-run").stdout
    assert "would re-drive 1; skipped 0 already re-driven" in dry
    done = orjson.loads(cli("redrive", ids["invalid_value"], "--json").stdout)
    assert (done["redriven"], done["skipped_already_redriven"], done["ids"]) == (1, 0, [ids["invalid_value"]])
    again = cli("redrive", "--all").stdout
    assert "redriven 1; skipped 1 already re-driven" in again
    assert "redriven 0; skipped 2 already re-driven" in cli("redrive", "--all").stdout
    empty = orjson.loads(cli("list", "--quarantine", "--json").stdout)
    assert empty["counts"]["total"] == 0

    bad = cli("list", "-e", "bogus", code=2)
    assert "--error-type: unknown 'bogus'" in bad.stderr
