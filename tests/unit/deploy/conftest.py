"""``prometheus`` and ``promtool`` for the tests of the shipped Prometheus files: found, or installed once per session
from Debian's package (as root; see :mod:`slipstream.infra.prometheus`). A run where they cannot be had fails."""

from __future__ import annotations

import pytest

from slipstream.infra.exceptions import InfraError
from slipstream.infra.prometheus import PrometheusTools, ensure_tools


@pytest.fixture(scope="session")
def prometheus_tools() -> PrometheusTools:
    try:
        return ensure_tools()
    except InfraError as exc:
        pytest.fail(f"prometheus and promtool cannot be had: {exc}", pytrace=False)
