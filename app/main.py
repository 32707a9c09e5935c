"""create_app(): settings, database, writer, middleware and routers, composed. Nothing else lives here."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match, Route

from app import __version__
from app.alerts import evaluate as alerting
from app.asgi import error_response
from app.auth import ApiKeys
from app.config import IngestMode, Settings
from app.database import Database
from app.errors import IngestError, InvalidQuery
from app.intake import writer
from app.intake.intake import Intake
from app.requestlog import RequestLog
from app.routes import (
    alerts,
    bulk,
    facets,
    firehose,
    health,
    ingest,
    loki,
    loki_query,
    loki_tail,
    otlp,
    query,
    stats,
    stream,
    ui,
)
from app.storage import maintenance
from app.syslog.listeners import Listeners

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
    syslog = Listeners(settings, log_writer)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Open the pool (and apply migrations) before the first request; a bad DSN fails start-up.
        await database.pool()
        housekeeping = asyncio.create_task(
            maintenance.run_forever(database, min(settings.idempotency_ttl, 300))
        )
        # Alert rules (app/alerts/): evaluated every ALERT_INTERVAL; deliveries still running at shutdown
        # are dropped (at most once, docs/alerts.md).
        alert_loop = asyncio.create_task(alerting.run_forever(database, settings.alert_interval))
        # Syslog listeners (app/syslog/), those configured; stopped before the writer they write through.
        await syslog.start()
        yield
        await syslog.stop()
        housekeeping.cancel()
        alert_loop.cancel()
        await asyncio.gather(alert_loop, return_exceptions=True)
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
    intake = Intake(settings, log_writer)
    ingest_router, post_logs = ingest.router(settings, intake)
    routers = (
        ingest_router,
        otlp.router(settings, intake),
        loki.router(settings, intake, database),
        loki_query.router(settings, database),
        loki_tail.router(settings, database),
        bulk.router(settings, intake),
        firehose.router(settings, intake),
        query.router(settings, database),
        facets.router(settings, database),
        stream.router(settings, database),
        health.router(settings, database),
        stats.router(settings, database),
        alerts.router(settings, database),
        ui.mount(app),
    )
    for router in routers:
        app.include_router(router)
    routes = [route for router in routers for route in router.routes]
    _add_error_handlers(app, routes)
    paths = {route.path for route in routes}  # type: ignore[attr-defined]
    ingest.document(app, settings)
    query.document(app)
    otlp.document(app)

    # Middleware, innermost first: the fast POST /logs route, API keys, CORS (answers preflights before
    # keys are asked for), and outermost the request log, which sees every answer including 401s.
    app.add_middleware(ingest.IngestRoute, endpoint=post_logs)
    app.add_middleware(ApiKeys, settings=settings)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origin_list,
        allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
        allow_headers=["Content-Type", "Content-Encoding", "Authorization", "X-API-Key", "Idempotency-Key"],
        expose_headers=["Retry-After", "Idempotent-Replayed"],
        max_age=600,
    )
    app.add_middleware(RequestLog, routes=frozenset(paths | {"/docs", "/openapi.json"}))
    return app


def _add_error_handlers(app: FastAPI, routes: list[BaseRoute]) -> None:
    @app.exception_handler(IngestError)
    async def ingest_error(request: Request, exc: IngestError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # The routes FastAPI validates (path parameters) answer 422 in the same shape as every other error.
        errors = [
            {"field": ".".join(str(part) for part in e["loc"]), "message": e["msg"], "type": e["type"]}
            for e in exc.errors()
        ]
        return error_response(InvalidQuery(errors))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = str(exc.detail).lower().replace(" ", "_")
        headers = exc.headers
        if exc.status_code == 405:
            # Starlette names only the first route of the path in Allow; /logs has GET and POST.
            allowed = {
                method
                for route in routes
                if isinstance(route, Route)
                and route.methods
                and route.matches(request.scope)[0] is Match.PARTIAL
                for method in route.methods
            }
            headers = {"Allow": ", ".join(sorted(allowed))}
        return JSONResponse(
            {"error": code, "message": str(exc.detail)}, status_code=exc.status_code, headers=headers
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal_error", "message": "internal server error"}, status_code=500)
