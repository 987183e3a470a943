"""A small Confluent-compatible schema registry, run by the framing tests on a free loopback port.

It answers the part of the REST API that confluent-kafka's ``SchemaRegistryClient`` (and so Slipstream's
``ConfluentFraming``) uses, with Confluent's semantics: schema ids are global and stable (the same schema text under
any subject gets the same id), a subject's versions count from 1 and registering a schema a subject already holds
returns its existing version. Schemas are kept as registered (AVRO only, as Slipstream's contracts are). It also
records every request, so a test can see which subjects the pipeline registered and that decoders fetched by id.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from slipstream.infra.ports import free_ports

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


@dataclass
class RegistryState:
    schemas: list[str] = field(default_factory=list)  # id - 1 -> canonical schema text
    subjects: dict[str, list[int]] = field(default_factory=dict)  # subject -> ids by version - 1
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def register(self, subject: str, schema: str) -> tuple[int, int]:
        canonical = json.dumps(json.loads(schema), sort_keys=True, separators=(",", ":"))
        with self.lock:
            if canonical in self.schemas:
                schema_id = self.schemas.index(canonical) + 1
            else:
                self.schemas.append(canonical)
                schema_id = len(self.schemas)
            versions = self.subjects.setdefault(subject, [])
            if schema_id not in versions:
                versions.append(schema_id)
            return schema_id, versions.index(schema_id) + 1

    def schema(self, schema_id: int) -> str:
        with self.lock:
            if not 1 <= schema_id <= len(self.schemas):
                raise HTTPException(404, detail={"error_code": 40403, "message": f"Schema {schema_id} not found"})
            return self.schemas[schema_id - 1]


def make_app(state: RegistryState) -> FastAPI:
    app = FastAPI()

    def answer(body: Any) -> JSONResponse:
        return JSONResponse(body, media_type=CONTENT_TYPE)

    @app.middleware("http")
    async def remember(request: Request, call_next: Any) -> Any:
        state.requests.append((request.method, request.url.path))
        return await call_next(request)

    @app.post("/subjects/{subject}/versions")
    async def register(subject: str, request: Request) -> JSONResponse:
        body = await request.json()
        if body.get("schemaType", "AVRO") != "AVRO":
            raise HTTPException(422, detail={"error_code": 42201, "message": "only AVRO here"})
        schema_id, version = state.register(subject, body["schema"])
        return answer({"id": schema_id, "subject": subject, "version": version, "schema": state.schema(schema_id)})

    @app.get("/schemas/ids/{schema_id}")
    async def by_id(schema_id: int) -> JSONResponse:
        return answer({"schema": state.schema(schema_id), "schemaType": "AVRO"})

    @app.get("/subjects")
    async def subjects() -> JSONResponse:
        with state.lock:
            return answer(sorted(state.subjects))

    @app.get("/subjects/{subject}/versions")
    async def versions(subject: str) -> JSONResponse:
        with state.lock:
            ids = state.subjects.get(subject)
        if ids is None:
            raise HTTPException(404, detail={"error_code": 40401, "message": f"Subject '{subject}' not found."})
        return answer(list(range(1, len(ids) + 1)))

    @app.get("/subjects/{subject}/versions/{version}")
    async def version(subject: str, version: str) -> JSONResponse:
        with state.lock:
            ids = state.subjects.get(subject)
        if not ids:
            raise HTTPException(404, detail={"error_code": 40401, "message": f"Subject '{subject}' not found."})
        number = len(ids) if version == "latest" else int(version)
        schema_id = ids[number - 1]
        return answer({"subject": subject, "version": number, "id": schema_id, "schema": state.schema(schema_id)})

    return app


@dataclass
class RunningRegistry:
    url: str
    state: RegistryState


@contextmanager
def running_registry() -> Iterator[RunningRegistry]:
    """The registry on 127.0.0.1 and a free port, in a thread of this process; stopped on exit."""
    (port,) = free_ports(1)
    state = RegistryState()
    server = uvicorn.Server(uvicorn.Config(make_app(state), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="schema-registry", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            msg = "the test schema registry did not start"
            raise RuntimeError(msg)
        time.sleep(0.02)
    try:
        yield RunningRegistry(f"http://127.0.0.1:{port}", state)
    finally:
        server.should_exit = True
        thread.join(10)
