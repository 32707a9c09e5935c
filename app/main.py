"""create_app(): settings, database, writer, middleware and routers, composed. Nothing else lives here."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from app import __version__, maintenance, writer
from app.asgi import error_response
from app.auth import ApiKeys
from app.config import IngestMode, Settings
from app.database import Database
from app.errors import IngestError
from app.requestlog import RequestLog
from app.routes import health, ingest, stats

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
        housekeeping = asyncio.create_task(
            maintenance.run_forever(database, min(settings.idempotency_ttl, 300))
        )
        yield
        housekeeping.cancel()
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
    ingest_router, post_logs = ingest.router(settings, log_writer)
    routers = (ingest_router, health.router(settings, database), stats.router(settings, database))
    for router in routers:
        app.include_router(router)
    paths = {route.path for router in routers for route in router.routes}  # type: ignore[attr-defined]
    ingest.document(app, settings)

    # Middleware, innermost first: the fast POST /logs route, API keys, CORS (answers preflights before
    # keys are asked for), and outermost the request log, which sees every answer including 401s.
    app.add_middleware(ingest.IngestRoute, endpoint=post_logs)
    app.add_middleware(ApiKeys, settings=settings)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origin_list,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Content-Type", "Content-Encoding", "Authorization", "X-API-Key", "Idempotency-Key"],
        expose_headers=["Retry-After", "Idempotent-Replayed"],
        max_age=600,
    )
    app.add_middleware(RequestLog, routes=frozenset(paths | {"/docs", "/openapi.json"}))
    return app


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
