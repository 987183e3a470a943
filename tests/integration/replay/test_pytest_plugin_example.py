"""The example of docs/replay.md ("In your test suite"), run as written there, on the session's recorded slice.

The fixture ``slipstream_replay`` comes from the pytest plugin the package registers (entry point ``pytest11``); it
replays into a throwaway platform of its own (``--slipstream-backend``, ``$SLIPSTREAM_REPLAY_BACKEND``, ini
``slipstream_backend``, else auto), not into the suite's ``services``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from slipstream.replay.run import ReplayResult
from tests.integration.replay.conftest import Recorded

pytestmark = pytest.mark.integration
DOC = Path(__file__).resolve().parents[3] / "docs" / "replay.md"


@pytest.fixture
def promotion_day(recorded_slice: Recorded) -> Path:
    """What a user's own fixture gives: the path of a recorded slice (here: the session's little production)."""
    return recorded_slice.path


# --- the example, as in docs/replay.md (its imports are at the top) --------------------------------------------------
def test_the_promotion_day_replays_exactly(slipstream_replay, promotion_day: Path) -> None:
    result: ReplayResult = slipstream_replay(promotion_day, challenger="1")  # also backtest version 1 on that day
    assert result.ok, result.to_dict()["diff"]["listed"][:3]  # every prediction again, within the tolerance
    assert result.summary.matched == result.summary.recorded > 0
    assert result.counts["swaps"] >= 1  # the promotion inside the window, reproduced event for event
    assert result.backtest is not None and result.backtest["scored"] == result.summary.recorded


# --- the example's own checks -----------------------------------------------------------------------------------------
def test_the_docs_show_this_example_as_it_runs(pytestconfig: pytest.Config) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8").split("## In your test suite")[1], re.S)
    example = next(b for b in blocks if "def test_the_promotion_day_replays_exactly" in b)
    source = Path(__file__).read_text(encoding="utf-8")
    imports, _, test = example.partition("\n\n\ndef ")
    assert "def " + test.strip() in source  # the test, verbatim
    assert all(line in source.splitlines() for line in imports.splitlines())  # and every import it makes
    assert pytestconfig.pluginmanager.has_plugin("slipstream"), "the pytest11 entry point is not installed"
