"""GET /stats: exact counts of the stored logs, read from the summary the writer keeps (app/summary.py)."""

from __future__ import annotations

from fastapi import APIRouter

from app import summary
from app.config import Settings
from app.database import Database
from app.models import Stats
from app.routes.errors import responses
from app.writer import database_errors


def router(settings: Settings, database: Database) -> APIRouter:
    api = APIRouter()

    @api.get("/stats", response_model=Stats, responses=responses(401, 403, 503), summary="Exact counts")
    async def get_stats() -> Stats:
        with database_errors():
            pool = await database.pool()
            async with pool.acquire(timeout=settings.db_acquire_timeout) as conn:
                return await summary.read(conn)

    return api
