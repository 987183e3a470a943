"""The README's example is executed, so it cannot rot."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from slipstream.schemas.contracts import Contracts
from slipstream.schemas.transport import TopicAdmin
from tests.conftest import Services

pytestmark = pytest.mark.integration
README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_example_runs(services: Services, capsys: pytest.CaptureFixture[str]) -> None:
    (code,) = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)
    prefix = f"t-readme-{uuid.uuid4().hex[:10]}."
    try:
        exec(compile(code, str(README), "exec"), {"BOOTSTRAP": services.bootstrap_servers, "PREFIX": prefix})  # noqa: S102
        assert capsys.readouterr().out.strip() == "57.16 undecodable"
    finally:
        TopicAdmin(services.bootstrap_servers).delete(Contracts.default(prefix).catalog.full_names())
