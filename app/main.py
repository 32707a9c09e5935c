"""create_app(): the routes, the middleware and the lifespan of log-save-server."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import __version__, rows, stats, writer
from app.config import IngestMode, Settings
from app.database import Database
from app.decode import check_content_type, content_encoding, decode
from app.errors import IngestError, PayloadTooLarge
from app.models import ErrorBody, Health, IngestResult, Stats, batch_adapter

log = logging.getLogger("app")


def create_app(
    settings: Settings | None = None,
    *,
    allow_embedded: bool = True,
    ingest_mode: IngestMode | None = None,
) -> FastAPI:
    settings = settings or Settings()
    database = Database(settings, allow_embedded=allow_embedded)
    log_writer = writer.create(settings, database, ingest_mode)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Open the pool (and apply migrations) before the first request; a bad DSN fails start-up.
        await database.pool()
        yield
        await log_writer.close()
        await database.close()

    app = FastAPI(
        title="log-save-server",
        version=__version__,
        summary="Batches of structured logs over HTTP, stored in PostgreSQL with COPY.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.database = database
    app.state.writer = log_writer
    _add_error_handlers(app)
    post_logs = _add_routes(app, settings, database, log_writer)
    # Added first, so it runs innermost: inside CORS and the request log, before FastAPI's routing.
    app.add_middleware(IngestRoute, endpoint=post_logs)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origin_list,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Content-Type", "Content-Encoding", "Authorization"],
        expose_headers=["Retry-After"],
        max_age=600,
    )
    app.add_middleware(RequestLog)
    _document_request_body(app, settings)
    return app


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "model": ErrorBody,
        "description": "Malformed JSON, bad or truncated compressed data, or not UTF-8.",
    },
    413: {"model": ErrorBody, "description": "Body over MAX_BODY_BYTES, on the wire or once decompressed."},
    415: {
        "model": ErrorBody,
        "description": "Content-Type is not application/json, or an unknown Content-Encoding.",
    },
    422: {
        "model": ErrorBody,
        "description": "Invalid entries: each bad field is named, e.g. `logs.2.level`.",
    },
    503: {
        "model": ErrorBody,
        "description": "PostgreSQL unreachable or the write queue full. Nothing was stored; retry later.",
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}},
    },
}


Endpoint = Callable[[Request], Awaitable[Response]]


def _add_routes(app: FastAPI, settings: Settings, database: Database, log_writer: writer.Writer) -> Endpoint:
    """Register every route; return POST /logs's endpoint, which IngestRoute serves."""
    limit = settings.max_body_bytes

    @app.post("/logs", response_model=IngestResult, responses=_ERRORS, summary="Store a batch of logs")
    async def post_logs(request: Request) -> Response:
        """Validate 1 to MAX_BATCH_SIZE logs and store them all, or none. 200 means committed."""
        # The raw body is read and validated here rather than by a FastAPI body parameter: headers are
        # checked before the body is read, and app/rows.py validates straight from the decoded bytes.
        check_content_type(request.headers.get("content-type"))
        encoding = content_encoding(request.headers.get("content-encoding"))
        body = await _read_body(request, limit)
        batch = rows.parse(decode(body, encoding, limit), settings.max_batch_size)
        await log_writer.write(batch)
        request.state.saved = len(batch)
        return Response(b'{"saved":%d,"status":"success"}' % len(batch), media_type="application/json")

    @app.get("/", response_model=Health, summary="Liveness")
    async def health() -> Health:
        return Health(version=__version__)

    @app.get("/health/ready", response_model=Health, responses={503: _ERRORS[503]}, summary="Readiness")
    async def ready() -> Health:
        """Healthy only when PostgreSQL answers."""
        with writer.database_errors():
            pool = await database.pool()
            await pool.fetchval("SELECT 1", timeout=settings.db_acquire_timeout)
        return Health(version=__version__)

    @app.get("/stats", response_model=Stats, responses={503: _ERRORS[503]}, summary="Exact counts")
    async def get_stats() -> Stats:
        with writer.database_errors():
            pool = await database.pool()
            async with pool.acquire(timeout=settings.db_acquire_timeout) as conn:
                return await stats.fetch(conn)

    return post_logs


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit}")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def error_response(exc: IngestError) -> JSONResponse:
    if exc.status >= 500:
        log.warning("%s", exc.message, extra={"error": exc.code})
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(IngestError)
    async def ingest_error(request: Request, exc: IngestError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = str(exc.detail).lower().replace(" ", "_")
        return JSONResponse(
            {"error": code, "message": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal_error", "message": "internal server error"}, status_code=500)


def _document_request_body(app: FastAPI, settings: Settings) -> None:
    """Describe POST /logs's body in OpenAPI from the same schema the route validates with."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        body = batch_adapter(settings.max_batch_size).json_schema(ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(body.pop("$defs", {}))
        components["LogBatch"] = body
        media = {"schema": {"$ref": "#/components/schemas/LogBatch"}}
        schema["paths"]["/logs"]["post"]["requestBody"] = {
            "required": True,
            "description": "Content-Encoding may be gzip, deflate or zstd; the decompressed size is capped.",
            "content": {"application/json": media},
        }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


class IngestRoute:
    """Serves POST /logs straight from the middleware stack, with the same endpoint FastAPI documents.

    Skipping FastAPI's router, exception middleware and endpoint wrappers is measurable when the request
    itself is small (batches of 10: see results/REPORT.md); every other route goes through FastAPI.
    """

    def __init__(self, app: ASGIApp, endpoint: Endpoint) -> None:
        self.app = app
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or _route_path(scope) != "/logs":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await self.endpoint(request)
        except IngestError as exc:
            response = error_response(exc)
        await response(scope, receive, send)


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


class RequestLog:
    """One JSON log line per request: method, path, status, duration and logs saved."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                    "saved": scope.get("state", {}).get("saved", 0),
                },
            )
