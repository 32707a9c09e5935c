"""GET / (liveness), GET /health/ready (PostgreSQL answers) and GET /metrics (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from app import __version__, metrics
from app.config import Settings
from app.database import Database
from app.intake.writer import database_errors
from app.models import Health
from app.routes.errors import responses


def router(settings: Settings, database: Database) -> APIRouter:
    api = APIRouter()

    @api.get("/", response_model=Health, summary="Liveness")
    async def health() -> Health:
        return Health(version=__version__)

    @api.get("/health/ready", response_model=Health, responses=responses(503), summary="Readiness")
    async def ready() -> Health:
        """Healthy only when PostgreSQL answers."""
        with database_errors():
            pool = await database.pool()
            await pool.fetchval("SELECT 1", timeout=settings.db_acquire_timeout)
        return Health(version=__version__)

    @api.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}}, **responses(401, 403)},
        summary="Prometheus metrics",
    )
    async def get_metrics() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    return api
