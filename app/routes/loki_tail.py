"""GET /loki/api/v1/tail (a WebSocket): Loki's live tail, as Grafana's Explore opens it, on GET /logs/stream's
machinery (app/routes/stream.py): the same polls above a trailing floor of ids, so no committed log is
missed or sent twice.

It sends the matches of the last `start` .. now first (at most `limit`, oldest first), then every new match
as it commits, each poll as one frame `{"streams": [...], "dropped_entries": null}`; when more match than a
poll sends, the tail skips to now and `dropped_entries` says entries were passed over. A bad query closes the socket with code 1008
and Loki's message as the reason; the tail ends after STREAM_MAX_SECONDS (Grafana then offers to resume).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

import asyncpg
import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from app.config import Settings
from app.database import Database
from app.errors import IngestError
from app.logql import answer, ast, params
from app.logql.engine import Engine
from app.logql.labels import ROW_PG, entry
from app.logql.parser import parse
from app.logql.pipeline import compile_stages, run
from app.logql.plan import plan
from app.logql.store import PostgresSource
from app.query import postgres
from app.routes.stream import _SEQUENCE, BATCH, LATE, LOOKBACK, POLL

PATH = "/loki/api/v1/tail"


def router(settings: Settings, database: Database) -> APIRouter:
    api = APIRouter()
    open_tails = 0

    @api.websocket(PATH)
    async def tail(socket: WebSocket) -> None:
        nonlocal open_tails
        values = {k: v.replace("\x00", "\ufffd") for k, v in socket.query_params.items()}
        try:
            expr = parse(values.get("query") or "")
            if not isinstance(expr, ast.LogQuery):
                raise IngestError("tail takes a log query, not a metric query")
            limit = params.limit(values.get("limit"))
            start = params.timestamp(values.get("start"), params.now_ns() - params.HOUR_NS, "start")
        except IngestError as exc:
            await socket.close(code=1008, reason=exc.message[:120])
            return
        if settings.stream_max_clients == 0 or open_tails >= settings.stream_max_clients:
            await socket.close(code=1013, reason="too many live streams on this worker: retry later")
            return
        open_tails += 1
        try:
            await socket.accept()
            await _tail(socket, settings, database, expr, limit, start)
        except (WebSocketDisconnect, asyncpg.PostgresError, OSError, TimeoutError):
            pass
        finally:
            open_tails -= 1

    return api


async def _tail(
    socket: WebSocket, settings: Settings, database: Database, expr: ast.LogQuery, limit: int, start: int
) -> None:
    planned = plan(expr)
    stages = compile_stages(planned.stages)
    timeout_ms = int(settings.query_timeout * 1000)
    pool = await database.pool()
    async with pool.acquire(timeout=settings.db_acquire_timeout) as conn, conn.transaction(readonly=True):
        await conn.execute(f"SET LOCAL statement_timeout = {timeout_ms}")
        floor = await conn.fetchval(_SEQUENCE)
        engine = Engine(PostgresSource(conn), settings.logql_max_rows, settings.logql_max_series)
        history = await engine.logs(expr, start, params.now_ns() + 1, limit, False)
    if history:
        await socket.send_bytes(_frame(list(reversed(history)), False))
    where, args = postgres(list(planned.conditions))
    n = len(args)
    sql = (
        f"SELECT {ROW_PG} FROM logs WHERE {' AND '.join(where)} AND created_at >= now() - interval '{LATE}'"
        f" AND id > ${n + 1} AND id NOT IN (SELECT unnest(${n + 2}::bigint[])) ORDER BY id LIMIT {BATCH}"
    )
    started = time.monotonic()
    floors: deque[tuple[float, int]] = deque()
    sent: set[int] = set()
    while (left := settings.stream_max_seconds - (time.monotonic() - started)) > 0:
        async with pool.acquire(timeout=settings.db_acquire_timeout) as conn, conn.transaction(readonly=True):
            await conn.execute(f"SET LOCAL statement_timeout = {timeout_ms}")
            value = await conn.fetchval(_SEQUENCE)
            rows = await conn.fetch(sql, *args, floor, list(sent))
        now = time.monotonic()
        floors.append((now, value))
        while len(floors) > 1 and floors[1][0] <= now - LOOKBACK:
            floors.popleft()
        if floors[0][0] <= now - LOOKBACK and floors[0][1] > floor:
            floor = floors[0][1]
        matched = []
        for row in rows:
            item = entry(tuple(row))
            if run(stages, item):
                matched.append(item)
        dropped = len(rows) == BATCH
        if dropped:
            # More match than a poll sends: skip to now and say entries were passed over, as Loki does.
            floor, sent = max(floor, value), set()
        else:
            sent.update(row["id"] for row in rows)
        if matched or dropped:
            await socket.send_bytes(_frame(matched, dropped))
        sent = {i for i in sent if i > floor}
        try:
            await asyncio.wait_for(socket.receive(), timeout=min(POLL, left))
        except TimeoutError:
            continue
        else:
            return  # the client spoke or went away: Loki's tail takes nothing from it
    await socket.close(code=1000, reason="STREAM_MAX_SECONDS reached: resume the tail")


def _frame(entries: list[Any], dropped: bool) -> bytes:
    streams = answer.streams(entries, categorize=False)["data"]["result"]
    drops = [{"labels": {}, "timestamp": str(time.time_ns())}] if dropped else None
    return orjson.dumps({"streams": streams, "dropped_entries": drops})
