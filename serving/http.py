"""The HTTP front end: FastAPI on uvicorn, orjson in and out.

``POST /v1/fraud/score``       a transaction -> score, decision, model version, features, freshness, timings
``POST /v1/recommendations``   a user and candidate items -> the items ranked by the reco model
``GET  /healthz``              the process is up
``GET  /readyz``               a model is loaded and Redis answers (503 otherwise, with what is missing)
``GET  /metrics``              Prometheus

An invalid request gets 422 naming the field and value. When Redis cannot be read the answer is 503 with the
reason — never a score computed from missing features. Scoring is a ~0.1 ms CPU-bound call, so it runs on the
event loop itself: a thread hop would cost more than the work.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from slipstream.features.windows import to_micros
from slipstream.serving.base import FraudScore, Recommendation
from slipstream.serving.exceptions import (
    FeaturesUnavailableError,
    InvalidRequestError,
    ModelUnavailableError,
    ServingError,
)
from slipstream.serving.service import ScoringService, freeze_startup_heap

log = logging.getLogger(__name__)


class ORJSON(JSONResponse):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class FraudRequest(BaseModel):
    """A card transaction to score before it is authorised."""

    model_config = ConfigDict(extra="forbid")
    transaction_id: Annotated[int, Field(ge=0, description="Unique id of the transaction.")]
    customer_id: Annotated[int, Field(ge=0)]
    terminal_id: Annotated[int, Field(ge=0)]
    amount: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    event_time: datetime | None = Field(None, description="When it happened (timezone-aware); default: now.")


class Candidate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item_id: Annotated[int, Field(ge=0)]
    category_id: Annotated[int, Field(ge=0, le=2**31 - 1)]
    retrieval_views_7d: Annotated[
        float, Field(ge=0, allow_inf_nan=False, description="The retrieval stage's popularity: views in 7 days.")
    ] = 0.0


class RecoRequest(BaseModel):
    """A user and the candidates a retrieval stage proposed; the ranker orders them."""

    model_config = ConfigDict(extra="forbid")
    request_id: str | None = Field(None, max_length=200)
    user_id: Annotated[int, Field(ge=0)]
    candidates: Annotated[list[Candidate], Field(min_length=1, max_length=2000)]
    top_k: Annotated[int | None, Field(ge=1)] = None
    event_time: datetime | None = None
    include_features: bool = False


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
    if value.tzinfo is None:
        msg = f"event_time must carry a timezone, got {value.isoformat()!r}"
        raise InvalidRequestError(msg)
    return to_micros(value)


FRAUD_PATH = "/v1/fraud/score"
_JSON_HEADERS = [(b"content-type", b"application/json")]


def invalid_body(errors: Sequence[Any]) -> dict[str, Any]:
    """The 422 body for pydantic errors: every bad field named with its value."""
    problems = [
        {"field": ".".join(str(p) for p in err["loc"] if p != "body"), "message": err["msg"], "input": err.get("input")}
        for err in errors
    ]
    text = "; ".join(f"{p['field']}={p['input']!r}: {p['message']}" for p in problems)
    return {"error": "invalid_request", "detail": text, "problems": problems}


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
    return status, kind, {"error": kind, "detail": str(exc)}


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
            raise RuntimeError(msg)
        scored = [s for s in scores if not isinstance(s, Exception)]
        if scored:
            self.service.observe_fraud("http", scored)
        return scores


class FraudFastPath:
    """The outermost ASGI app: answers ``POST /v1/fraud/score`` itself and hands everything else to FastAPI.

    Same validation (the same pydantic model, from the raw JSON), same scoring, same bodies and statuses as the
    FastAPI route, which stays for the OpenAPI docs. Measured: FastAPI's routing, dependency solving, middleware
    stack and response handling cost ~40% of a scoring request's CPU on this path (see docs/architecture.md).
    Requests that arrive together are scored together (:class:`FraudBatcher`).
    """

    def __init__(self, app: Any, service: ScoringService) -> None:
        self.app = app
        self.service = service
        self.batcher = FraudBatcher(service)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != FRAUD_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            request = FraudRequest.model_validate_json(body)
            record = fraud_record(request)
        except ValidationError as exc:
            self.service.metrics.requests.labels("http", "fraud", "invalid_request").inc()
            status, payload = 422, invalid_body(exc.errors())
        except InvalidRequestError as exc:
            status, payload = fraud_failure(self.service, exc)
        else:
            try:
                status, payload = 200, fraud_response(await self.batcher.score(record))
            except ServingError as exc:
                status, payload = fraud_failure(self.service, exc)
            except Exception as exc:  # a bug: a 500 that says so, counted as an error, not a dropped connection
                log.exception("scoring failed")
                status, payload = fraud_failure(self.service, ServingError(f"{type(exc).__name__}: {exc}"))
        data = orjson.dumps(payload)
        headers = [*_JSON_HEADERS, (b"content-length", str(len(data)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})


def create_app(service: ScoringService, *, manage_lifecycle: bool = True) -> FraudFastPath:
    """The ASGI app over ``service``: :class:`FraudFastPath` in front of the FastAPI app (``.app``); with
    ``manage_lifecycle`` it starts/stops the model watcher."""

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

    def _error(status: int, kind: str, endpoint: str, detail: str) -> ORJSON:
        metrics.requests.labels("http", endpoint, kind).inc()
        return ORJSON({"error": kind, "detail": detail}, status_code=status)

    def _failure(exc: ServingError, endpoint: str) -> ORJSON:
        status, kind, payload = failure_body(exc)
        metrics.requests.labels("http", endpoint, kind).inc()
        return ORJSON(payload, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> ORJSON:
        endpoint = "reco" if "recommend" in request.url.path else "fraud"
        metrics.requests.labels("http", endpoint, "invalid_request").inc()
        return ORJSON(invalid_body(exc.errors()), status_code=422)

    @app.post(FRAUD_PATH, summary="Score one transaction")
    async def score_fraud(body: FraudRequest) -> Response:
        """Documented here; served by :class:`FraudFastPath` (same validation, scoring and answers)."""
        status, payload = score_fraud_request(service, body)
        return ORJSON(payload, status_code=status)

    @app.post("/v1/recommendations", summary="Rank candidate items for a user")
    async def recommend(body: RecoRequest) -> Response:
        if service.reco is None:
            return _error(404, "not_enabled", "reco", "this scorer does not serve recommendations (no reco model)")
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
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return FraudFastPath(app, service)
