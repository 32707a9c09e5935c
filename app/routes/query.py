"""GET /logs (a page, or with `Accept: application/x-ndjson` every match streamed) and GET /traces/{id}."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Annotated, Any

import asyncpg
import orjson
from fastapi import APIRouter, FastAPI, Path, Request, Response
from fastapi.responses import StreamingResponse

from app import query
from app.config import Settings
from app.database import Database
from app.errors import ArchiveUnreadable, QueryTimeout
from app.intake.writer import database_errors
from app.models import ENVIRONMENTS, LEVELS, LogPage, TraceLogs
from app.routes.errors import responses
from app.search import lookup
from app.storage import archive, cold

NDJSON = "application/x-ndjson"


def router(settings: Settings, database: Database) -> APIRouter:
    api = APIRouter()

    # Days moved to Parquet (app/storage/archive.py) are read there, the rest from PostgreSQL (app/storage/cold.py).
    reader = cold.Cold(settings.archive_url) if settings.archive_url and archive.available() else None

    async def run(
        sql: str | query.Query,
        args: list[Any],
        bounds: tuple[datetime | None, datetime | None] | None = None,
    ) -> tuple[list[asyncpg.Record], cold.Parts | None]:
        """PostgreSQL's rows, and (given bounds, with an archive) the archived parts of those days, decided in
        the same snapshot so that no day is read from both or neither. Given a Query, its page, reading only
        the search index's candidates when it has some (app/search/lookup.py), in that same snapshot."""
        with database_errors(), narrow_on_timeout(settings.query_timeout):
            async with database.snapshot(settings.query_timeout) as conn:
                parts = await cold.Parts.find(conn, *bounds) if bounds and settings.archive_url else None
                if isinstance(sql, query.Query):
                    hot = await searched(conn, sql)
                    sql, args = hot.page_sql(), hot.args
                return await conn.fetch(sql, *args), parts

    async def searched(conn: asyncpg.Connection, parsed: query.Query) -> query.Query:
        """The query PostgreSQL runs: with the index's candidates as one more condition when it has some."""
        if not settings.search_index:
            return parsed
        return await lookup.narrow(conn, parsed) or parsed

    def cold_reader(parts: cold.Parts) -> cold.Cold:
        if reader is None:
            raise ArchiveUnreadable(cold.UNAVAILABLE)
        return reader

    @api.get(
        "/logs",
        response_model=LogPage,
        responses={
            **responses(401, 403, 422, 503),
            200: {
                "content": {NDJSON: {"schema": {"type": "string"}}},
                "description": "A page, or every match",
            },
        },
        summary="Read logs, newest first",
    )
    async def get_logs(request: Request) -> Response:
        """Filters combine with AND; `service`, `level` and `environment` may repeat (any of them matches);
        `meta.<key>=<value>` matches logs whose metadata has that key and value, and a dotted key is a path
        into nested objects (`meta.http.status=500` matches `{"http": {"status": 500}}`; a dot inside a key
        is written `\\.`, a backslash `\\\\`). `not.<filter>=<value>` (for service, level, environment,
        trace_id, user_id, session_id and `meta.<key>`) excludes the logs that match it, and may repeat;
        logs without the field are kept. Each page ends with `next_cursor` (null on the last one); pass it
        as `cursor` for the next page."""
        params = filters(request)
        export = NDJSON in request.headers.get("accept", "")
        parsed = query.parse(params, export=export)
        if export:
            return StreamingResponse(_export(parsed), media_type=NDJSON)
        hot, parts = await run(parsed, [], parsed.bounds())
        assert parsed.limit is not None
        found = [(r["created_at"], r["id"], r["doc"]) for r in hot]
        # The archive holds older days: it is read only when they could still make this page.
        if parts and parts.paths and (len(hot) <= parsed.limit or hot[-1]["created_at"] < parts.newest_end):
            with narrow_on_timeout(settings.query_timeout):
                rows = await cold_reader(parts).page(parts.paths, parsed, parts.newest_end)
            docs = cold.render(rows)
            found += [(cold.moment(row[1]), row[0], doc) for row, doc in zip(rows, docs, strict=True)]
            found.sort(key=lambda row: (row[0], row[1]), reverse=True)
        page, more = found[: parsed.limit], len(found) > parsed.limit
        cursor = query.encode_cursor(page[-1][0], page[-1][1]) if more else None
        body = b'{"logs":[' + ",".join(r[2] for r in page).encode() + b'],"next_cursor":'
        body += (b'"%s"' % cursor.encode()) if cursor else b"null"
        return Response(body + b"}", media_type="application/json")

    async def _export(parsed: query.Query) -> AsyncIterator[bytes]:
        # Server-side cursors: rows go out as PostgreSQL and DuckDB produce them, never all in memory; the two
        # streams (both newest first) are merged.
        async with database.snapshot(settings.query_timeout) as conn:
            parts = await cold.Parts.find(conn, *parsed.bounds()) if settings.archive_url else None

            narrowed = await searched(conn, parsed)

            async def hot() -> AsyncIterator[tuple[tuple[datetime, int], str]]:
                async for record in conn.cursor(narrowed.page_sql(), *narrowed.args, prefetch=500):
                    yield (record["created_at"], record["id"]), record["doc"]

            async def archived() -> AsyncIterator[tuple[tuple[datetime, int], str]]:
                if not parts or not parts.paths:
                    return
                async for rows in cold_reader(parts).export(parts.paths, parsed):
                    for row, doc in zip(rows, cold.render(rows), strict=True):
                        yield (cold.moment(row[1]), row[0]), doc

            batch: list[str] = []
            async for doc in _merged(hot(), archived()):
                batch.append(doc)
                if len(batch) == 500:
                    yield ("\n".join(batch) + "\n").encode()
                    batch = []
            if batch:
                yield ("\n".join(batch) + "\n").encode()

    @api.get(
        "/traces/{trace_id}",
        response_model=TraceLogs,
        responses=responses(401, 403, 422, 503),
        summary="Every log of one trace, in time order",
    )
    async def get_trace(trace_id: Annotated[str, Path(min_length=1, max_length=32)]) -> Response:
        hot, parts = await run(
            f"SELECT {query.DOCUMENT} AS doc, created_at, id FROM logs WHERE trace_id = $1 AND NOT deleted"
            f" ORDER BY created_at, id LIMIT {query.MAX_TRACE_LOGS}",
            [no_nul(trace_id)],
            (None, None),
        )
        found = [(r["created_at"], r["id"], r["doc"]) for r in hot]
        if parts and parts.paths:
            with narrow_on_timeout(settings.query_timeout):
                rows = await cold_reader(parts).trace(parts.paths, no_nul(trace_id), query.MAX_TRACE_LOGS)
            docs = cold.render(rows)
            found += [(cold.moment(row[1]), row[0], doc) for row, doc in zip(rows, docs, strict=True)]
            found = sorted(found, key=lambda row: (row[0], row[1]))[: query.MAX_TRACE_LOGS]
        body = b'{"trace_id":' + orjson.dumps(trace_id) + b',"logs":['
        return Response(body + ",".join(r[2] for r in found).encode() + b"]}", media_type="application/json")

    return api


@contextlib.contextmanager
def narrow_on_timeout(seconds: float) -> Iterator[None]:
    try:
        yield
    except asyncpg.QueryCanceledError as exc:
        raise QueryTimeout(
            f"the query ran longer than QUERY_TIMEOUT ({seconds:g} s): narrow it with since/until "
            "or a more selective filter"
        ) from exc


async def _merged(
    first: AsyncIterator[tuple[Any, str]], second: AsyncIterator[tuple[Any, str]]
) -> AsyncIterator[str]:
    """Two streams of (key, document), each in descending key order, as one in that order."""
    a, b = await anext(first, None), await anext(second, None)
    while a is not None or b is not None:
        if b is None or (a is not None and a[0] > b[0]):
            assert a is not None
            yield a[1]
            a = await anext(first, None)
        else:
            yield b[1]
            b = await anext(second, None)


def filters(request: Request) -> dict[str, list[str]]:
    """The query string as GET /logs's filters take it: every value of every name."""
    return {key: [no_nul(v) for v in request.query_params.getlist(key)] for key in request.query_params}


def no_nul(value: str) -> str:
    # PostgreSQL text cannot hold U+0000; stored logs have U+FFFD in its place, so the filter does too.
    return value.replace("\x00", "\ufffd")


def document(app: FastAPI) -> None:
    """GET /logs reads its query string itself (`meta.<key>` cannot be declared to FastAPI), so its
    parameters are described here, in the OpenAPI document."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        schema["paths"]["/logs"]["get"]["parameters"] = parameters()
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def parameters() -> list[dict[str, Any]]:
    """GET /logs's filters as OpenAPI parameters (other routes that take the same filters reuse them)."""
    moment = query.MOMENT_SCHEMA
    text = {"type": "string"}
    levels = {"type": "array", "items": {"enum": list(LEVELS)}}
    environments = {"type": "array", "items": {"enum": list(ENVIRONMENTS)}}
    return [
        _param("since", moment, "From this time on (RFC 3339, or Unix time in s/ms/µs/ns)."),
        _param("until", moment, "Before this time."),
        _param("service", {"type": "array", "items": text}, "Any of these services.", explode=True),
        _param("level", levels, "Any of these levels.", explode=True),
        _param("min_level", {"enum": list(LEVELS)}, "This level or a more severe one."),
        _param("environment", environments, "Any of these.", explode=True),
        _param("trace_id", {"type": "string", "maxLength": 32}, "Exactly this trace id."),
        _param("user_id", {"type": "string", "maxLength": 255}, "Exactly this user id."),
        _param("session_id", {"type": "string", "maxLength": 100}, "Exactly this session id."),
        _param(
            "q",
            text,
            'Case-insensitive substring of the message. Wrapped in double quotes (`"connection reset"`), a'
            " phrase: those words, in that order, as whole words of the message (words are runs of letters,"
            " digits and `_`; case and the characters between words do not matter); fast with the search"
            " index (docs/search.md).",
        ),
        _param(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": query.MAX_LIMIT, "default": 100},
            "Page size.",
        ),
        _param(
            "cursor",
            {"type": "string", "minLength": 1, "pattern": "^[A-Za-z0-9_-]+$"},
            "`next_cursor` of the previous page (opaque: only one this server made is taken).",
        ),
        _param("not.service", {"type": "array", "items": text}, "None of these services.", explode=True),
        _param("not.level", levels, "None of these levels.", explode=True),
        _param("not.environment", environments, "None of these environments.", explode=True),
        *(
            _param(
                f"not.{name}",
                {"type": "array", "items": {"type": "string", "maxLength": longest}},
                f"None of these (logs without a {name} are kept).",
                explode=True,
            )
            for name, longest in query.LONGEST.items()
        ),
    ]


def _param(name: str, schema: dict[str, Any], description: str, explode: bool = False) -> dict[str, Any]:
    param = {"name": name, "in": "query", "required": False, "schema": schema, "description": description}
    if explode:
        param.update(style="form", explode=True)
    return param
