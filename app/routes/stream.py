"""GET /logs/stream: server-sent events of the logs matching GET /logs's filters, as they commit.

Each event is one log (`event: log`, `id:` its id, `data:` the log as GET /logs writes it). The stream polls
PostgreSQL every POLL seconds on a connection it holds only for the poll, so it never pins a pool slot.

Not missing a log: ids come from one sequence, but a transaction that took its ids first may commit after
one that took larger ids. So a poll does not ask for `id > newest shown`; it asks for ids above a floor
that trails by LOOKBACK: the sequence's value LOOKBACK seconds ago (a writer's transaction commits within
seconds of taking its ids), and drops the ids it already sent (remembered while they are above the
floor). The created_at bound (LATE before now) only lets the primary key's index serve the poll: a log
whose created_at is more than LATE before its arrival is in GET /logs but not streamed.

Bounds: at most BATCH logs a poll (when more match, the stream skips ahead to now and sends `event:
lagging`: a live view of more than BATCH/POLL logs a second is a sample, said so), a heartbeat comment every HEARTBEAT
seconds, at most STREAM_MAX_CLIENTS streams per worker (then a 429; 0 turns streams off, as on Lambda), and STREAM_MAX_SECONDS per stream,
after which it ends and the client reconnects with `Last-Event-ID` (EventSource does this by itself), from
where it left off. A stream ends as soon as its client goes away.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from app import query
from app.config import Settings
from app.database import Database
from app.errors import Busy, IngestError, InvalidQuery
from app.intake.writer import database_errors
from app.models import ErrorBody
from app.routes.errors import responses
from app.routes.query import filters, parameters

POLL = 1.0
LOOKBACK = 30.0
LATE = "5 minutes"
BATCH = 500
HEARTBEAT = 15.0
RETRY_MS = 2000
SSE = "text/event-stream"
# The largest id taken so far (before the first nextval, none: last_value is then the first id to come).
_SEQUENCE = "SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM logs_id_seq"

log = logging.getLogger("app.stream")
# One event of the stream, as an SSE parser hands it over.
_EVENT = {
    "type": "object",
    "properties": {
        "event": {"enum": ["log", "lagging", "error"]},
        "id": {"type": "string", "description": "The log's id (event `log`)."},
        "data": {"type": "string", "description": "`log`: the log as GET /logs writes it, JSON."},
        "retry": {"type": "integer"},
    },
}


class StreamsOff(IngestError):
    status = 501
    code = "streams_off"


def router(settings: Settings, database: Database) -> APIRouter:
    api = APIRouter()
    timeout_ms = int(settings.query_timeout * 1000)
    open_streams = 0

    @api.get(
        "/logs/stream",
        responses={
            **responses(401, 403, 422, 429, 503),
            501: {
                "model": ErrorBody,
                "description": "Streams are off here (STREAM_MAX_CLIENTS=0, the default on Lambda, where API "
                "Gateway buffers whole answers): poll GET /logs.",
            },
            200: {
                "content": {SSE: {"schema": _EVENT}},
                "description": "Server-sent events: `event: log` with `id: <log id>` and the log as `data`;"
                " `event: lagging` when more logs match than a poll sends; `: heartbeat` comments.",
            },
        },
        response_class=StreamingResponse,
        summary="New matching logs as they commit (server-sent events)",
        openapi_extra={"parameters": _parameters()},
    )
    async def stream_logs(request: Request) -> StreamingResponse:
        """GET /logs's filters (without `limit`, `cursor` and `since`); `until` ends the stream's logs. Starts
        with the logs that commit from now on, or after `Last-Event-ID` (header) or `after` (a log id, for
        a client that has just read GET /logs's newest page). Not on Lambda behind API Gateway, which buffers
        whole responses: there the web view polls GET /logs instead."""
        nonlocal open_streams
        if settings.stream_max_clients == 0:
            raise StreamsOff(
                "live streams are off on this server (STREAM_MAX_CLIENTS=0, the default on Lambda, where API "
                "Gateway buffers whole answers): poll GET /logs"
            )
        params = filters(request)
        errors = [
            {"field": f"query.{name}", "message": "not a stream filter", "type": "invalid_filter"}
            for name in ("limit", "cursor", "since")
            if name in params
        ]
        after = _after(request.headers.get("last-event-id"), params.pop("after", None), errors)
        if errors:
            raise InvalidQuery(errors)
        parsed = query.parse(params, export=True)
        if after is None:
            # "From now on" is from this request: the sequence's value before the answer starts.
            with database_errors():
                pool = await database.pool()
                async with pool.acquire(timeout=settings.db_acquire_timeout) as conn:
                    after = await conn.fetchval(_SEQUENCE)
        if open_streams >= settings.stream_max_clients:
            raise Busy(
                f"{settings.stream_max_clients} live streams are open on this worker (STREAM_MAX_CLIENTS): "
                "retry later, or poll GET /logs",
                retry_after=5,
            )
        open_streams += 1

        async def events() -> AsyncIterator[bytes]:
            nonlocal open_streams
            try:
                async for chunk in _events(request, settings, database, parsed, after, timeout_ms):
                    yield chunk
            finally:
                open_streams -= 1

        return StreamingResponse(
            events(),
            media_type=SSE,
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return api


def _after(header: str | None, param: list[str] | None, errors: list[dict[str, str]]) -> int | None:
    """Where to resume: `Last-Event-ID` when sent, else `after`; each checked when given."""
    if param is not None and len(param) > 1:
        errors.append({"field": "query.after", "message": "may be given once", "type": "invalid_filter"})
        param = None
    found = None
    for name, value in (("query.after", param[0] if param else None), ("header.last-event-id", header)):
        if value is None:
            continue
        if not re.fullmatch(r"[0-9]{1,19}", value.strip()) or int(value) >= 2**63:
            errors.append({"field": name, "message": "a log id (a whole number)", "type": "invalid_filter"})
        else:
            found = int(value)
    return found


async def _events(
    request: Request,
    settings: Settings,
    database: Database,
    parsed: query.Query,
    after: int,
    timeout_ms: int,
) -> AsyncIterator[bytes]:
    yield f"retry: {RETRY_MS}\n: connected\n\n".encode()
    n = len(parsed.args)
    # `NOT IN (SELECT unnest(…))` is a hashed subplan: one lookup per row, however many ids were sent.
    sql = (
        f"SELECT {query.DOCUMENT} AS doc, id FROM logs WHERE {' AND '.join(parsed.where)}"
        f" AND created_at >= now() - interval '{LATE}' AND id > ${n + 1}"
        f" AND id NOT IN (SELECT unnest(${n + 2}::bigint[])) ORDER BY id LIMIT {BATCH}"
    )
    started = beat = time.monotonic()
    floors: deque[tuple[float, int]] = deque()  # (when, the sequence's value then), oldest first
    floor = after
    sent: set[int] = set()
    while (left := settings.stream_max_seconds - (time.monotonic() - started)) > 0:
        if await request.is_disconnected():
            return
        try:
            records, value = await _poll(database, settings, sql, parsed.args, floor, sent, timeout_ms)
        except (asyncpg.PostgresError, OSError, TimeoutError) as exc:
            # The client reconnects after `retry` with Last-Event-ID, and carries on from there.
            log.warning("stream: poll failed: %s", exc)
            yield b'event: error\ndata: {"error": "the database did not answer: reconnecting"}\n\n'
            return
        now = time.monotonic()
        floors.append((now, value))
        while len(floors) > 1 and floors[1][0] <= now - LOOKBACK:
            floors.popleft()
        if floors[0][0] <= now - LOOKBACK and floors[0][1] > floor:
            floor = floors[0][1]
        if records:
            yield "".join(f"event: log\nid: {r['id']}\ndata: {r['doc']}\n\n" for r in records).encode()
            beat = now
            if len(records) == BATCH:
                # More match than the stream sends: skip to now, and say so, rather than fall behind.
                yield f'event: lagging\ndata: {{"skipped_to": {value}}}\n\n'.encode()
                floor, sent = max(floor, value), set()
            else:
                sent.update(r["id"] for r in records)
        elif now - beat >= HEARTBEAT:
            yield b": heartbeat\n\n"
            beat = now
        sent = {i for i in sent if i > floor}
        await asyncio.sleep(min(POLL, left))


async def _poll(
    database: Database,
    settings: Settings,
    sql: str,
    args: list[Any],
    floor: int,
    sent: set[int],
    timeout_ms: int,
) -> tuple[list[Any], int]:
    """The matching logs above the floor not sent yet, and the sequence's value, read before them: every
    id up to it has been taken by then."""
    pool = await database.pool()
    async with pool.acquire(timeout=settings.db_acquire_timeout) as conn, conn.transaction(readonly=True):
        await conn.execute(f"SET LOCAL statement_timeout = {timeout_ms}")
        value = await conn.fetchval(_SEQUENCE)
        return await conn.fetch(sql, *args, floor, list(sent)), value


def _parameters() -> list[dict[str, Any]]:
    documented = [p for p in parameters() if p["name"] not in ("limit", "cursor", "since")]
    documented.append(
        {
            "name": "Last-Event-ID",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
            "description": "Resume after this log id (the `id` of the last event received).",
        }
    )
    documented.append(
        {
            "name": "after",
            "in": "query",
            "required": False,
            "schema": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
            "description": "Send the logs after this log id (as `Last-Event-ID` does; the header wins).",
        }
    )
    return documented
