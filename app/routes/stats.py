"""GET /stats: exact counts of the stored logs, read from the summary the writer keeps (app/storage/summary.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Request

from app import query
from app.config import Settings
from app.database import Database
from app.errors import ArchiveUnreadable, InvalidQuery
from app.intake.writer import database_errors
from app.models import Stats, Timeline
from app.routes.errors import responses
from app.storage import archive, cold, summary


def router(settings: Settings, database: Database) -> APIRouter:
    api = APIRouter()
    reader = cold.Cold(settings.archive_url) if settings.archive_url and archive.available() else None

    @api.get("/stats", response_model=Stats, responses=responses(401, 403, 503), summary="Exact counts")
    async def get_stats() -> Stats:
        with database_errors():
            pool = await database.pool()
            async with pool.acquire(timeout=settings.db_acquire_timeout) as conn:
                return await summary.read(conn)

    @api.get(
        "/stats/timeline",
        response_model=Timeline,
        responses=responses(401, 403, 422, 503),
        summary="Logs per minute (or hour) by level",
        openapi_extra={"parameters": _TIMELINE_PARAMETERS},
    )
    async def get_timeline(request: Request) -> Timeline:
        """Per minute for ranges up to 6 hours (counted from the rows), per hour beyond (from the /stats
        summary, so any range costs the same). Soft-deleted rows are not counted. Default: the last 24 h; an
        empty range (until before since) has no points."""
        # Read from the query string directly: the parameters are documented by hand (_TIMELINE_PARAMETERS).
        params = request.query_params
        start, end = _moments(params.getlist("since"), params.getlist("until"))
        with database_errors():
            async with database.snapshot() as conn:
                archived: list[tuple[datetime, str, int]] = []
                # Minutes are counted from the rows: those of archived days are in the files.
                if settings.archive_url and end - start <= summary.MINUTES_UP_TO:
                    parts = await cold.Parts.find(conn, start, end)
                    if parts.paths:
                        if reader is None:
                            raise ArchiveUnreadable(cold.UNAVAILABLE)
                        archived = await reader.per_minute(parts.paths, start, end)
                return await summary.timeline(conn, start, end, archived)

    return api


def _moments(since: list[str], until: list[str]) -> tuple[datetime, datetime]:
    """The range asked for: `until` defaults to now and `since` to a day before `until`."""
    errors = []
    parsed: dict[str, datetime] = {}
    for name, values in (("since", since), ("until", until)):
        if values:
            try:
                if len(values) > 1:  # as GET /logs and /logs/facets: not silently the last one
                    raise ValueError("may be given once")
                parsed[name] = query.moment(values[0])
            except ValueError as exc:
                errors.append({"field": f"query.{name}", "message": str(exc), "type": "invalid_filter"})
    if errors:
        raise InvalidQuery(errors)
    end = parsed.get("until") or datetime.now(UTC)
    if "since" in parsed:
        return parsed["since"], end
    # A day before an `until` in the first day of year 1 is before datetime can count: from its start.
    return (end - _DAY if end - _EARLIEST >= _DAY else _EARLIEST), end


_DAY = timedelta(hours=24)
_EARLIEST = datetime.min.replace(tzinfo=UTC)


_TIMELINE_PARAMETERS = [
    {"name": "since", "in": "query", "required": False, "schema": query.MOMENT_SCHEMA,
     "description": "RFC 3339, or Unix time in s/ms/µs/ns. Default: a day before until."},
    {"name": "until", "in": "query", "required": False, "schema": query.MOMENT_SCHEMA, "description": "Default: now."},
]  # fmt: skip
