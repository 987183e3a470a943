"""The HTTP front end, seen as a client sees it: readiness, then one live transaction scored every few hundred ms."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import SecretStr

from slipstream.demo.exceptions import DemoError
from slipstream.demo.stats import LiveStats
from slipstream.demo.timeline import TX_FIELDS, iso


class HttpScorer:
    """A keep-alive client of `slipstream serve`; with ``token``, it sends ``Authorization: Bearer <token>``."""

    def __init__(self, port: int, timeout: float = 5.0, *, token: SecretStr | None = None) -> None:
        self.port = port
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._headers = {"Content-Type": "application/json"}
        if token is not None:
            self._headers["Authorization"] = f"Bearer {token.get_secret_value()}"

    def _request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        if self._conn is None:
            self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            self._conn.request(method, path, body, self._headers)
            response = self._conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise

    def ready(self) -> bool:
        try:
            return self._request("GET", "/readyz")[0] == 200
        except (OSError, http.client.HTTPException):
            return False

    def score(self, record: Mapping[str, Any]) -> tuple[float, dict[str, Any]]:
        """POST one transaction; (round trip in ms, the answer)."""
        body = orjson.dumps({**{k: record[k] for k in TX_FIELDS}, "event_time": iso(int(record["event_time"]))})
        started = time.perf_counter()
        status, payload = self._request("POST", "/v1/fraud/score", body)
        elapsed = (time.perf_counter() - started) * 1000
        answer: dict[str, Any] = orjson.loads(payload)
        if status != 200:
            msg = f"HTTP {status}: {answer.get('detail', answer)}"
            raise DemoError(msg)
        return elapsed, answer

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def probe_http(scorer: HttpScorer, stats: LiveStats, stop: threading.Event, interval_s: float = 0.25) -> None:
    """Score the latest live transaction over HTTP every ``interval_s``: the round trips give the latency."""
    while not stop.wait(interval_s):
        record = dict(stats.last_tx)
        if not record:
            continue
        try:
            elapsed, answer = scorer.score(record)
        except (OSError, http.client.HTTPException, DemoError, ValueError):
            stats.http_errors += 1
            continue
        stats.http_ms.append(elapsed)
        stats.http_last = {
            **answer,
            "round_trip_ms": elapsed,
            "is_fraud": record["is_fraud"],
            "customer_id": record["customer_id"],
            "amount": record["amount"],
        }
    scorer.close()
