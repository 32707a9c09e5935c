"""The scale suite: /stats and GET /logs's queries as the table grows, against a full count.

The table is filled through the server's own write path (`app.intake.writer.commit`: partitions made on demand,
COPY, the /stats summary in the same transaction), with the generator's realistic rows re-timed so that
the final size spans the last DAYS days evenly (a steady ingest), and each trace holds 10 logs. At each
size every query runs QUERY_RUNS times (a full count, slow, COUNT_RUNS times) and the p50 is reported.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from app import query
from app.config import Settings
from app.database import Database
from app.intake import writer
from app.storage import summary
from bench import db, http, ui

Row = tuple[Any, ...]
DAYS = 10
BATCH = 10_000
QUERY_RUNS = 15
COUNT_RUNS = 3
# /stats as it was before the summary: one pass over the whole table.
FULL_COUNT = """
SELECT service, level::text AS level, count(*) AS n,
       count(*) FILTER (WHERE created_at >= now() - interval '24 hours') AS recent
FROM logs WHERE NOT deleted GROUP BY service, level
"""


_TABLE_BYTES = (
    "SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits WHERE inhparent = 'logs'::regclass"
)
_PARTITIONS = "SELECT count(*) FROM pg_inherits WHERE inhparent = 'logs'::regclass"


def _queries(now: datetime, pool: Sequence[Row]) -> dict[str, tuple[str, list[Any]]]:
    """GET /logs's statements, built by the server's own query parser."""
    hour_ago = (now - timedelta(hours=1)).isoformat()

    def page(params: dict[str, list[str]]) -> tuple[str, list[Any]]:
        parsed = query.parse(params)
        return parsed.page_sql(), parsed.args

    return {
        "newest page": page({}),
        "service + min_level page": page({"service": [pool[0][3]], "min_level": ["WARN"]}),
        "text search, last hour": page({"q": ["declined"], "since": [hour_ago]}),
        "metadata filter, last hour": page({"meta.region": ["eu-west-1"], "since": [hour_ago]}),
        "trace": (
            f"SELECT {query.DOCUMENT} AS doc FROM logs WHERE trace_id = $1 AND NOT deleted ORDER BY created_at, id",
            [f"{12345:032x}"],
        ),
    }


def _ui(dsn: str, service: str, since: str) -> dict[str, Any]:
    with http.server(dsn, "group") as (_, port):
        return {
            **ui.api(f"http://127.0.0.1:{port}"),
            **ui.measure(f"http://127.0.0.1:{port}", service, since),
        }


async def _p50(conn: asyncpg.Connection, sql: str, args: list[Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await conn.fetch(sql, *args)
        times.append((time.perf_counter() - started) * 1000)
    return round(db.percentile(times, 50), 3)


async def _stats_p50(conn: asyncpg.Connection, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await summary.read(conn)
        times.append((time.perf_counter() - started) * 1000)
    return round(db.percentile(times, 50), 3)


async def _fill(
    database: Database, pool: Sequence[Row], start: int, stop: int, total: int, now: datetime
) -> None:
    """Rows start..stop of `total`, timed evenly over the last DAYS days, written by the app's writer."""
    step = timedelta(days=DAYS) / total
    first = now - timedelta(days=DAYS)

    def batch(begin: int) -> list[Row]:
        rows = []
        for k in range(begin, min(begin + BATCH, stop)):
            row = list(pool[k % len(pool)])
            row[0] = first + step * k
            row[6] = f"{k // 10:032x}"  # trace ids: ten logs each
            rows.append(tuple(row))
        return rows

    for begin in range(start, stop, 2 * BATCH):
        # Two COPY transactions at once, as the server's two group writers do.
        await asyncio.gather(
            *(
                writer.commit(database, [writer.Batch(batch(b), b"")])
                for b in (begin, begin + BATCH)
                if b < stop
            )
        )


async def run(
    dsn: str, pool: Sequence[Row], sizes: Sequence[int], progress: Callable[[str], None]
) -> list[dict[str, Any]]:
    settings = Settings(_env_file=None, database_url=dsn, db_pool_min_size=1, db_pool_max_size=4)  # type: ignore[call-arg]
    database = Database(settings)
    now = datetime.now(UTC)
    results = []
    try:
        admin = await db.connect(dsn)
        try:
            await admin.execute("TRUNCATE logs, log_counts")
            filled = 0
            for size in sizes:
                progress(f"scale: filling to {size:,} rows")
                wal_before = await admin.fetchval("SELECT pg_current_wal_lsn()")
                await _fill(database, pool, filled, size, sizes[-1], now)
                wal = await admin.fetchval("SELECT pg_current_wal_lsn() - $1::pg_lsn", wal_before)
                written, filled = size - filled, size
                # What the server's housekeeping does every few minutes: shards and old hours folded.
                await summary.compact(admin)
                await admin.execute("VACUUM ANALYZE logs")
                progress(f"scale: queries at {size:,} rows")
                result: dict[str, Any] = {
                    "rows": size,
                    # What sizing PostgreSQL needs per log: WAL written by ingest, and the table on disk.
                    "wal_bytes_per_row": round(float(wal) / written, 1),
                    "table_bytes_per_row": round(float(await admin.fetchval(_TABLE_BYTES)) / size, 1),
                    "partitions": await admin.fetchval(_PARTITIONS),
                    "stats_p50_ms": await _stats_p50(admin, QUERY_RUNS),
                    "full_count_p50_ms": await _p50(admin, FULL_COUNT, [], COUNT_RUNS),
                }
                for name, (sql, args) in _queries(now, pool).items():
                    result[f"{name} p50_ms"] = await _p50(admin, sql, args, QUERY_RUNS)
                progress(f"scale: the web view at {size:,} rows")
                since = (now - timedelta(days=DAYS)).isoformat()
                result.update(await asyncio.to_thread(_ui, dsn, pool[0][3], since))
                # The logs the stream was timed with are not part of the table being measured.
                await admin.execute("DELETE FROM logs WHERE service = $1", ui.STREAM_SERVICE)
                await admin.execute("DELETE FROM log_counts WHERE service = $1", ui.STREAM_SERVICE)
                stored = await admin.fetchval("SELECT count(*) FROM logs")
                if stored != size:
                    raise db.RowCountMismatch(f"scale: {size} rows written but {stored} stored")
                results.append(result)
            await admin.execute("TRUNCATE logs, log_counts")
        finally:
            await admin.close()
    finally:
        await database.close()
    return results
