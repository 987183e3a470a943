"""The HTTP front end: FastAPI on uvicorn, orjson in and out.

``POST /v1/fraud/score``       a transaction -> score, decision, model version, features, freshness, timings
``POST /v1/recommendations``   a user and candidate items -> the items ranked by the reco model
``GET  /healthz``              the process is up
``GET  /readyz``               a model is loaded and Redis answers (503 otherwise, with what is missing)
``GET  /metrics``              Prometheus

With tokens, ``/v1/*`` needs ``Authorization: Bearer <token>`` (else 401, :mod:`slipstream.serving.auth`); the
probes and metrics stay open. Without, the scorer is open and :func:`create_app` logs a warning saying so.

Bad input is a 4xx with a JSON body and a one-line ``detail``, never a 5xx: 400 for a body that is not a JSON
object, 413 over the body cap (``SLIPSTREAM_HTTP_MAX_BODY_BYTES``), 415 for a content type that is not JSON, 422
naming each bad field and (an excerpt of) its value (:mod:`slipstream.serving.http_edge`). When Redis cannot be
read the answer is 503 with the reason — never a score computed from missing features. Scoring is a ~0.1 ms
CPU-bound call, so it runs on the event loop itself: a thread hop would cost more than the work.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from slipstream.features.windows import to_micros
from slipstream.serving.auth import UNAUTHORIZED, BearerAuth, is_protected
from slipstream.serving.base import FraudScore, Recommendation
from slipstream.serving.exceptions import (
    FeaturesUnavailableError,
    InvalidRequestError,
    ModelUnavailableError,
    ServingError,
)
from slipstream.serving.http_edge import (
    DEFAULT_MAX_BODY_BYTES,
    MALFORMED,
    Cut,
    FraudRequest,
    Receive,
    RecoRequest,
    Rejection,
    Send,
    one_line,
    read_body,
    reject_invalid,
    replay,
    screen,
    send_json,
    too_large,
)
from slipstream.serving.metrics import exposition
from slipstream.serving.service import ScoringService, freeze_startup_heap

log = logging.getLogger(__name__)


class ORJSON(JSONResponse):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def fraud_response(score: FraudScore) -> dict[str, Any]:
    return {
        "transaction_id": int(score.event_id),
        "prediction_id": score.prediction_id,
        "score": score.score,
        "decision": score.decision,
        "threshold": score.threshold,
        "model": {"name": score.model_name, "version": score.model_version},
        "features": score.features,
        "freshness": {
            f.view: {
                "newest_event_time": None if f.newest_event_us is None else _iso(f.newest_event_us),
                "age_ms": f.age_ms,
            }
            for f in score.freshness
        },
        "feature_age_ms": score.feature_age_ms,
        "event_time": _iso(score.event_time_us),
        "timings_us": score.timings_us,
    }


def reco_response(reco: Recommendation, top_k: int | None, include_features: bool) -> dict[str, Any]:
    items = reco.items[:top_k] if top_k else reco.items
    return {
        "request_id": reco.request_id,
        "user_id": reco.user_id,
        "model": {"name": reco.model_name, "version": reco.model_version},
        "items": [
            {
                "item_id": i.item_id,
                "score": i.score,
                "rank": i.rank,
                **({"features": i.features} if include_features else {}),
            }
            for i in items
        ],
        "feature_age_ms": reco.feature_age_ms,
        "event_time": _iso(reco.event_time_us),
        "timings_us": reco.timings_us,
    }


def _iso(micros: int) -> str:
    return datetime.fromtimestamp(micros / 1e6, tz=UTC).isoformat()


def _when(value: datetime | None) -> int:
    if value is None:
        return time.time_ns() // 1000
    return to_micros(value)  # aware: the request models take only AwareDatetime


FRAUD_PATH = "/v1/fraud/score"
RECO_PATH = "/v1/recommendations"
ENDPOINTS = {FRAUD_PATH: "fraud", RECO_PATH: "reco"}  # the JSON endpoints, by the name their metrics carry


def failure_body(exc: ServingError) -> tuple[int, str, dict[str, Any]]:
    """Status, outcome label and body for a scoring failure: 503 when features or the model are unavailable."""
    if isinstance(exc, FeaturesUnavailableError):
        kind, status = "features_unavailable", 503
    elif isinstance(exc, ModelUnavailableError):
        kind, status = "model_unavailable", 503
    elif isinstance(exc, InvalidRequestError):
        kind, status = "invalid_request", 422
    else:
        kind, status = "error", 500
    return status, kind, {"error": kind, "detail": one_line(str(exc))}


def score_fraud_request(service: ScoringService, body: FraudRequest) -> tuple[int, dict[str, Any]]:
    """Score one validated request: (200, the score) or the failure's status and body."""
    try:
        score = service.fraud.score(fraud_record(body))
    except ServingError as exc:
        return fraud_failure(service, exc)
    service.observe_fraud("http", [score])
    return 200, fraud_response(score)


def fraud_record(body: FraudRequest) -> dict[str, Any]:
    return {
        "transaction_id": body.transaction_id,
        "customer_id": body.customer_id,
        "terminal_id": body.terminal_id,
        "amount": body.amount,
        "event_time": _when(body.event_time),
    }


def fraud_failure(service: ScoringService, exc: ServingError) -> tuple[int, dict[str, Any]]:
    status, kind, payload = failure_body(exc)
    service.metrics.requests.labels("http", "fraud", kind).inc()
    return status, payload


class FraudBatcher:
    """Scores the requests that arrive together as one batch: one Redis round trip and one ONNX call for all.

    A request's coroutine adds its record and waits; the first one of a loop pass schedules the batch with
    ``call_soon``, which runs after every request task already ready in that pass. Alone, a request is scored by
    itself one pass later (a few µs); under load, those that queued while the loop was busy share a round trip
    instead of each blocking the loop for its own.
    """

    def __init__(self, service: ScoringService, max_batch: int = 64) -> None:
        self.service = service
        self.max_batch = max_batch
        self._pending: list[tuple[dict[str, Any], asyncio.Future[FraudScore]]] = []
        self._scheduled = False

    def score(self, record: dict[str, Any]) -> asyncio.Future[FraudScore]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[FraudScore] = loop.create_future()
        self._pending.append((record, future))
        if len(self._pending) >= self.max_batch:
            self._flush()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            outcomes = self._score([record for record, _ in batch])
        except Exception as exc:  # noqa: BLE001 - never leave a request waiting: each one gets the error
            outcomes = [exc] * len(batch)
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():  # its client may have gone: the task was cancelled
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    def _score(self, records: list[dict[str, Any]]) -> list[FraudScore | Exception]:
        """Each record's score or error. A batch that fails for another reason than the store or the model (a bug
        one record triggers) is scored record by record, so that only that record fails."""
        try:
            scores: list[FraudScore | Exception] = list(self.service.fraud.score_batch(records))
        except ServingError as exc:
            return [exc] * len(records)
        except Exception:
            if len(records) == 1:
                raise
            scores = []
            for record in records:
                try:
                    scores.append(self.service.fraud.score_batch([record])[0])
                except Exception as exc:  # noqa: BLE001 - this record's answer
                    scores.append(exc)
        if len(scores) != len(records):
            msg = f"the scorer returned {len(scores)} scores for {len(records)} requests"
            raise ServingError(msg)  # a 500 to every request of the batch
        scored = [s for s in scores if not isinstance(s, Exception)]
        if scored:
            self.service.observe_fraud("http", scored)
        return scores


class FraudFastPath:
    """The outermost ASGI app: the HTTP edge of every request, and the scorer of ``POST /v1/fraud/score``.

    Every request first passes :func:`~slipstream.serving.http_edge.screen` (body cap from ``Content-Length``,
    JSON content type on the JSON endpoints); a body is read here, never past ``max_body_bytes``, and handed on.
    ``POST /v1/fraud/score`` is answered here; everything else goes to FastAPI with its body already read.
    Same validation (the same pydantic model, from the raw JSON), same scoring, same bodies and statuses as the
    FastAPI route, which stays for the OpenAPI docs. Measured: FastAPI's routing, dependency solving, middleware
    stack and response handling cost ~40% of a scoring request's CPU on this path (see docs/architecture.md).
    Requests that arrive together are scored together (:class:`FraudBatcher`). With ``auth``, a request to
    ``/v1/*`` without an accepted bearer token is refused first, before its headers are screened or its body read.
    """

    def __init__(
        self,
        app: Any,
        service: ScoringService,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        auth: BearerAuth | None = None,
    ) -> None:
        self.app = app
        self.service = service
        self.max_body_bytes = max_body_bytes
        self.batcher = FraudBatcher(service)
        self.auth = auth

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        endpoint = ENDPOINTS.get(path)
        if self.auth is not None and is_protected(path) and not self.auth.allows(scope["headers"]):
            if endpoint is not None:
                self.service.metrics.requests.labels("http", endpoint, UNAUTHORIZED).inc()
            await self.auth.refuse(send)
            return
        posted = endpoint is not None and scope["method"] == "POST"
        head = screen(scope["headers"], limit=self.max_body_bytes, json_body=posted)
        if head.rejection is not None:  # refused unread: a body that follows must not be read as the next request
            await self._reject(send, head.rejection, endpoint, close=head.has_body)
            return
        if not (head.has_body or (posted and endpoint == "fraud")):
            await self.app(scope, receive, send)
            return
        body = await read_body(receive, self.max_body_bytes)
        if body is Cut.DISCONNECTED:
            return
        if body is Cut.TOO_LARGE:
            await self._reject(send, too_large(self.max_body_bytes), endpoint, close=True)
            return
        body = body.removeprefix(codecs.BOM_UTF8)  # RFC 8259 lets a parser ignore it: both endpoints do
        if posted and endpoint == "fraud":
            status, payload = await self._score(body)
            await send_json(send, status, payload)
        else:
            await self.app(scope, replay(body, receive), send)

    async def _reject(self, send: Send, rejection: Rejection, endpoint: str | None, *, close: bool) -> None:
        if endpoint is not None:
            self.service.metrics.requests.labels("http", endpoint, rejection.error).inc()
        await send_json(send, rejection.status, rejection.body(), close=close)

    async def _score(self, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            request = FraudRequest.model_validate_json(body)
            record = fraud_record(request)
        except ValidationError as exc:
            rejection = reject_invalid(exc.errors())
            self.service.metrics.requests.labels("http", "fraud", rejection.error).inc()
            return rejection.status, rejection.body()
        try:
            return 200, fraud_response(await self.batcher.score(record))
        except ServingError as exc:
            return fraud_failure(self.service, exc)
        except Exception as exc:  # a bug: a 500 that says so, counted as an error, not a dropped connection
            log.exception("scoring failed")
            return fraud_failure(self.service, ServingError(f"{type(exc).__name__}: {exc}"))


def create_app(
    service: ScoringService,
    *,
    manage_lifecycle: bool = True,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    auth: BearerAuth | None = None,
) -> FraudFastPath:
    """The ASGI app over ``service``: :class:`FraudFastPath` in front of the FastAPI app (``.app``); with
    ``manage_lifecycle`` it starts/stops the model watcher. A request body over ``max_body_bytes`` gets 413. With
    ``auth``, ``/v1/*`` needs a bearer token it accepts (401 otherwise); without, the scorer is open: logged."""
    if auth is None:
        log.warning(
            "the scorer is unauthenticated: anyone who reaches it can call /v1/* "
            "(set SLIPSTREAM_SCORER_TOKENS or SLIPSTREAM_SCORER_TOKENS_FILE)"
        )
    else:
        log.info("the scorer requires a bearer token on /v1/* (%r)", auth)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if manage_lifecycle:
            service.start()
            freeze_startup_heap()
        try:
            yield
        finally:
            if manage_lifecycle:
                service.stop()

    app = FastAPI(
        title="Slipstream scorer",
        summary="Fraud scores and recommendations from live features.",
        default_response_class=ORJSON,
        lifespan=lifespan,
    )
    metrics = service.metrics

    def _error(status: int, kind: str, endpoint: str, body: dict[str, Any]) -> ORJSON:
        metrics.requests.labels("http", endpoint, kind).inc()
        return ORJSON(body, status_code=status)

    def _failure(exc: ServingError, endpoint: str) -> ORJSON:
        status, kind, payload = failure_body(exc)
        metrics.requests.labels("http", endpoint, kind).inc()
        return ORJSON(payload, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> ORJSON:
        rejection = reject_invalid(exc.errors())
        return _error(rejection.status, rejection.error, ENDPOINTS.get(request.url.path, "fraud"), rejection.body())

    @app.exception_handler(HTTPException)
    async def _http_error(_: Request, exc: HTTPException) -> ORJSON:
        """FastAPI's own 4xx (no such path, method not allowed, a body it could not parse) in our shape."""
        kind = MALFORMED if exc.status_code == 400 else HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
        cause = exc.__cause__  # a body the json module refused: nesting past its recursion limit, a 5000-digit int
        detail = f"malformed JSON: {cause}" if exc.status_code == 400 and cause is not None else str(exc.detail)
        body = {"error": kind, "detail": one_line(detail)}
        return ORJSON(body, status_code=exc.status_code, headers=exc.headers)

    @app.post(FRAUD_PATH, summary="Score one transaction")
    async def score_fraud(body: FraudRequest) -> Response:
        """Documented here; served by :class:`FraudFastPath` (same validation, scoring and answers)."""
        status, payload = score_fraud_request(service, body)
        return ORJSON(payload, status_code=status)

    @app.post(RECO_PATH, summary="Rank candidate items for a user")
    async def recommend(body: RecoRequest) -> Response:
        if service.reco is None:
            detail = "this scorer does not serve recommendations (no reco model)"
            return _error(404, "not_enabled", "reco", {"error": "not_enabled", "detail": detail})
        try:
            request = body.model_dump()
            request["event_time"] = _when(body.event_time)
            reco = service.reco.rank(request)
        except ServingError as exc:
            return _failure(exc, "reco")
        metrics.observe_timings("http", "reco", reco.timings_us)
        metrics.requests.labels("http", "reco", "ok").inc()
        return ORJSON(reco_response(reco, body.top_k, body.include_features))

    @app.get("/healthz", summary="The process is up")
    async def healthz() -> Response:
        return ORJSON({"status": "ok"})

    @app.get("/readyz", summary="Ready to score: model loaded, Redis reachable")
    async def readyz() -> Response:
        report = service.readiness()
        return ORJSON(report, status_code=200 if report["ready"] else 503)

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        return Response(exposition(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return FraudFastPath(app, service, max_body_bytes, auth)
