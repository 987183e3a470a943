"""The dashboard's topics read from Kafka: once to their current ends (:func:`read_dashboard`, for `slipstream
report`), or on and on in a background thread that keeps a rendered page ready (:class:`LivePage`, for
`slipstream ui`).

Both read with :class:`~slipstream.monitoring.monitor.TopicReader` (no group, every partition from the beginning,
read_committed). A record that does not decode, or that the data refuses, is counted as rejected with its reason,
never a crash.

:class:`LivePage` owns one reader and one :class:`~slipstream.monitoring.dashboard_data.DashboardData` in its
thread and re-renders the page when new records came and the page is older than ``refresh_s`` (at once when it
first catches up with the topics' ends). A request only reads the last page rendered: it never waits for Kafka or
matplotlib. When Kafka cannot be read (a topic missing, the broker away), the page keeps what was read, says why
at the top, and the reader starts again from the beginning ``refresh_s`` later.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from slipstream.monitoring.dashboard import TITLE, render
from slipstream.monitoring.dashboard_data import DashboardData
from slipstream.monitoring.exceptions import MonitoringError
from slipstream.monitoring.monitor import TOPICS, TopicReader
from slipstream.monitoring.performance import PerformanceBook
from slipstream.schemas.contracts import Contracts
from slipstream.schemas.transport.connection import KafkaLike

DASHBOARD_TOPICS: Final = (*TOPICS, "drift-windows", "drift", "model-events")


def _take(data: DashboardData, records: Iterable[Mapping[str, Any]], failures: Iterable[str]) -> int:
    n = 0
    for record in records:
        n += 1
        try:
            data.update(record)
        except MonitoringError as exc:
            data.reject(str(exc))
    for reason in failures:
        n += 1
        data.reject(reason)
    return n


def read_dashboard(
    bootstrap_servers: KafkaLike,
    contracts: Contracts,
    *,
    data: DashboardData | None = None,
    topics: Iterable[str] = DASHBOARD_TOPICS,
) -> DashboardData:
    """Feed ``data`` (a new one by default) with every record of ``topics`` up to their ends now, and return it."""
    data = data if data is not None else DashboardData()
    with TopicReader(bootstrap_servers, contracts, topics) as reader:
        ends = reader.ends()
        while True:
            _take(data, *reader.poll())
            if reader.caught_up(ends):
                data.book.compact()
                return data


def _waiting_page(refresh_s: float, why: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset=utf-8><meta http-equiv=refresh content={max(1, round(refresh_s))}>"
        f"<title>{TITLE}</title></head><body><h1>{TITLE}</h1><p id=status>{html.escape(why)}</p></body></html>"
    )


class LivePage:
    """The dashboard page of the topics as they grow, kept ready by a background thread (see module)."""

    def __init__(
        self,
        bootstrap_servers: KafkaLike,
        contracts: Contracts,
        *,
        refresh_s: float = 10.0,
        retain_days: float | None = None,
        topics: Iterable[str] = DASHBOARD_TOPICS,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not refresh_s > 0:
            msg = f"refresh_s must be > 0, got {refresh_s!r}"
            raise MonitoringError(msg)
        self._bootstrap, self._contracts, self._topics = bootstrap_servers, contracts, tuple(topics)
        self.refresh_s, self._retain_days = refresh_s, retain_days
        self._clock, self._wall = clock, wall
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="dashboard-reader", daemon=True)
        self._page = _waiting_page(2.0, f"Reading {', '.join(self._topics)} from Kafka at {bootstrap_servers}...")
        self._rendered_at: float | None = None
        self._health: dict[str, Any] = {"page": False, "caught_up": False, "records": {}, "error": None}
        self._shown: DashboardData | None = None  # the data of the last page read without error

    # ------------------------------------------------------------------ what requests read
    @property
    def page(self) -> str:
        with self._lock:
            return self._page

    def health(self) -> dict[str, Any]:
        with self._lock:
            age = None if self._rendered_at is None else round(self._clock() - self._rendered_at, 3)
            return {"status": "ok", "page_age_s": age, **self._health}

    # ------------------------------------------------------------------ the thread
    def start(self) -> LivePage:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            data = DashboardData(PerformanceBook(retain_days=self._retain_days))
            try:
                self._follow(data)
            except MonitoringError as exc:
                self._publish(self._shown or data, caught_up=False, error=str(exc))
                self._stop.wait(self.refresh_s)

    def _follow(self, data: DashboardData) -> None:
        with TopicReader(self._bootstrap, self._contracts, self._topics) as reader:
            ends, caught_up, dirty = reader.ends(), False, True
            while not self._stop.is_set():
                dirty |= _take(data, *reader.poll(timeout=0.25)) > 0
                if not caught_up and reader.caught_up(ends):
                    caught_up = True
                    data.book.compact()
                    self._publish(data, caught_up=True, error=None)
                    dirty = False
                    continue
                last = self._rendered_at
                if dirty and (last is None or self._clock() - last >= self.refresh_s):
                    if caught_up:
                        data.book.compact()
                    self._publish(data, caught_up=caught_up, error=None)
                    dirty = False

    def _publish(self, data: DashboardData, *, caught_up: bool, error: str | None) -> None:
        records = data.records
        when = self._wall().strftime("%Y-%m-%d %H:%M:%S")
        status = f"Read from Kafka at {when} UTC: {sum(records.values()):,} records"
        status += "" if caught_up else " (catching up with the topics)"
        status += f"; the page reloads every {self.refresh_s:g} s."
        if error is not None:
            status = f"Kafka cannot be read: {error}. Showing what was read before, trying again in " + (
                f"{self.refresh_s:g} s. {status}"
            )
        try:
            page = render(data, refresh_s=self.refresh_s, status=status)
        except Exception as exc:  # noqa: BLE001 - a page that cannot be drawn is shown as an error; the server stays up
            page = _waiting_page(self.refresh_s, f"The page could not be drawn: {type(exc).__name__}: {exc}")
        if error is None:
            self._shown = data
        with self._lock:
            self._page = page
            self._rendered_at = self._clock()
            self._health = {"page": True, "caught_up": caught_up, "records": records, "error": error}


__all__ = ["DASHBOARD_TOPICS", "LivePage", "read_dashboard"]
