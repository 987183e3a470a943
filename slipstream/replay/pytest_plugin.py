"""pytest plugin (entry point ``pytest11: slipstream``): replay recorded slices in a test suite.

Installing Slipstream gives every suite the fixture ``slipstream_replay``::

    def test_the_promotion_day(slipstream_replay):
        result = slipstream_replay("tests/slices/promotion-day.slice")
        assert result.ok, result.to_dict()["diff"]

``slipstream_replay(slice_path, *, model=None, challenger=None, backend=None) -> ReplayResult`` replays the slice
through the production engine and Kafka scorer (:func:`slipstream.replay.run.replay_slice`) on a throwaway Kafka +
Redis. Each backend's platform is started on first use, once per session, and reused: every replay runs under a
namespace of its own (topics, Feast project) that it removes afterwards. The platforms are removed when the session
ends.

The backend, first found wins: the call's ``backend=``, ``--slipstream-backend``, the environment variable
``SLIPSTREAM_REPLAY_BACKEND``, the ini option ``slipstream_backend``, then ``auto`` (testcontainers when a Docker
engine answers, else the local launcher). The settings replays start from come from the session fixture
``slipstream_settings`` (:func:`slipstream.settings.load_settings`); a suite may override it.

Loading this plugin costs nothing a suite would notice: it imports only pytest and the standard library; Slipstream's
modules are imported by the first replay. ``-p no:slipstream`` turns it off.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import pytest

if TYPE_CHECKING:
    from slipstream.infra.throwaway import Throwaway
    from slipstream.replay.run import ReplayResult
    from slipstream.settings import Settings

Backend = Literal["auto", "testcontainers", "local"]
BACKENDS: tuple[Backend, ...] = ("auto", "testcontainers", "local")
OPTION = "--slipstream-backend"
ENV = "SLIPSTREAM_REPLAY_BACKEND"
INI = "slipstream_backend"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("slipstream", "Slipstream replays (the slipstream_replay fixture)")
    group.addoption(
        OPTION,
        dest="slipstream_backend",
        choices=BACKENDS,
        default=None,
        help=f"Throwaway Kafka + Redis for slipstream_replay: auto, testcontainers or local "
        f"(default: ${ENV}, else the ini option {INI}, else auto).",
    )
    parser.addini(INI, f"Throwaway platform backend of slipstream_replay when neither {OPTION} nor ${ENV} is given.")


def _checked(value: str, where: str) -> Backend:
    if value not in BACKENDS:
        msg = f"{where}: {value!r} is not one of {', '.join(BACKENDS)}"
        raise pytest.UsageError(msg)
    return value


def backend_of(config: pytest.Config) -> Backend:
    """The session's backend: the command line, then the environment, then the ini file, then ``auto``."""
    given = config.getoption("slipstream_backend", default=None)
    if given:
        return _checked(str(given), OPTION)
    env = os.environ.get(ENV, "").strip()
    if env:
        return _checked(env, ENV)
    ini = str(config.getini(INI) or "").strip()
    if ini:
        return _checked(ini, f"ini option {INI}")
    return "auto"


class PlatformPool:
    """The session's throwaway platforms, one per backend asked for, each started on first use."""

    def __init__(self) -> None:
        self._started: dict[str, Throwaway] = {}

    def get(self, backend: Backend) -> Throwaway:
        platform = self._started.get(backend)
        if platform is None:
            from slipstream.infra.throwaway import start_throwaway

            platform = start_throwaway(backend)
            self._started[backend] = platform
            self._started.setdefault(platform.backend, platform)  # "auto" chose one: that one is started too
        return platform

    def close(self) -> None:
        """Remove every platform started (each once); the first failure is raised after all were tried."""
        unique = list({id(p): p for p in self._started.values()}.values())
        self._started.clear()
        failures: list[Exception] = []
        for platform in unique:
            try:
                platform.close()
            except Exception as exc:  # noqa: BLE001 - every platform is closed; the first failure is raised below
                failures.append(exc)
        if failures:
            raise failures[0]


class Replay(Protocol):
    """The ``slipstream_replay`` fixture's value."""

    def __call__(
        self,
        slice_path: str | os.PathLike[str],
        *,
        model: str | None = None,
        challenger: str | None = None,
        backend: Backend | None = None,
    ) -> ReplayResult: ...


@pytest.fixture(scope="session")
def slipstream_settings() -> Settings:
    """The settings replays start from (each replay scopes them to its platform and namespace)."""
    from slipstream.settings import load_settings

    return load_settings()


@pytest.fixture(scope="session")
def slipstream_platforms() -> Iterator[PlatformPool]:
    """The session's throwaway platforms; removed when the session ends."""
    pool = PlatformPool()
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def slipstream_replay(
    request: pytest.FixtureRequest, slipstream_platforms: PlatformPool, slipstream_settings: Settings
) -> Replay:
    """``slipstream_replay(slice_path, *, model=None, challenger=None, backend=None) -> ReplayResult``."""
    default = backend_of(request.config)

    def replay(
        slice_path: str | os.PathLike[str],
        *,
        model: str | None = None,
        challenger: str | None = None,
        backend: Backend | None = None,
    ) -> ReplayResult:
        from slipstream.replay.run import ReplayOptions, replay_slice

        chosen = default if backend is None else _checked(backend, "slipstream_replay(backend=...)")
        platform = slipstream_platforms.get(chosen)
        options = ReplayOptions(backend=platform.backend, model=model, challenger=challenger)
        result = replay_slice(Path(slice_path), options, slipstream_settings, platform=platform)
        return dataclasses.replace(result, backend=platform.backend)  # the platform's backend, not "given"

    return replay
