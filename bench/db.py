"""The db suite: ways of writing a batch of logs into the app's own table, timed side by side.

Every write method has the same signature, `(conn, rows) -> rows written`, and commits once per batch
(one transaction), so the methods differ only in how the rows travel:

* insert    one INSERT statement per log, as the product description's "1 log = 1 INSERT"
* executemany   asyncpg's executemany of the same INSERT (pipelined)
* unnest    one INSERT ... SELECT FROM unnest($1::timestamptz[], ...) with one array per column
* copy      asyncpg copy_records_to_table: binary COPY, what the server uses
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from app.database import init_connection
from app.intake.rows import COLUMNS

Row = tuple[Any, ...]
Method = Callable[[asyncpg.Connection, Sequence[Row]], Awaitable[int]]

_PLACEHOLDERS = ", ".join(f"${i}" for i in range(1, len(COLUMNS) + 1))
INSERT = f"INSERT INTO logs ({', '.join(COLUMNS)}) VALUES ({_PLACEHOLDERS})"
_COLUMN_TYPES = {
    "created_at": "timestamptz", "level": "log_level", "log_type": "log_type", "environment": "log_environment",
    "method": "http_method", "duration_ms": "numeric", "metadata": "jsonb", "message": "text", "stack_trace": "text",
}  # fmt: skip
UNNEST = (
    f"INSERT INTO logs ({', '.join(COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(f"${i}::{_COLUMN_TYPES.get(c, 'varchar')}[]" for i, c in enumerate(COLUMNS, 1))
    + ")"
)
# The product description's four partial btrees, to measure what they cost at ingest.
_SEED_INDEXES = [
    "CREATE INDEX seed_service_level ON logs (service, level, created_at DESC) WHERE deleted = FALSE",
    "CREATE INDEX seed_error_type ON logs (error_type, created_at DESC) WHERE error_type IS NOT NULL AND deleted = FALSE",
    "CREATE INDEX seed_user ON logs (user_id, created_at DESC) WHERE user_id IS NOT NULL AND deleted = FALSE",
    "CREATE INDEX seed_trace ON logs (trace_id) WHERE trace_id IS NOT NULL AND deleted = FALSE",
]
# Schema choices measured against ours (logs partitioned by day; primary key (created_at, id), BRIN on
# created_at, a partial btree on trace_id; metadata as JSONB): (set up, undo) statements.
_TRACE_INDEX = "CREATE INDEX logs_trace_id ON logs (trace_id) WHERE trace_id IS NOT NULL"
_SEARCH_TRIGGER = (
    "CREATE TRIGGER logs_search_dirty AFTER INSERT OR UPDATE OF message, metadata, created_at ON logs"
    " FOR EACH STATEMENT EXECUTE FUNCTION search_dirty_on_write()"
)
SCHEMAS: dict[str, tuple[list[str], list[str]]] = {
    "ours": ([], []),
    "unpartitioned": (
        [
            "ALTER TABLE logs RENAME TO bench_logs_partitioned",
            "CREATE TABLE logs (LIKE bench_logs_partitioned INCLUDING ALL)",
        ],
        ["DROP TABLE logs", "ALTER TABLE bench_logs_partitioned RENAME TO logs"],
    ),
    "no trace_id btree": (["DROP INDEX logs_trace_id"], [_TRACE_INDEX]),
    "seed btrees": (_SEED_INDEXES, [f"DROP INDEX {statement.split()[2]}" for statement in _SEED_INDEXES]),
    "(service, created_at) btree": (
        ["CREATE INDEX bench_service ON logs (service, created_at)"],
        ["DROP INDEX bench_service"],
    ),
    "metadata GIN (jsonb_path_ops)": (
        ["CREATE INDEX bench_metadata ON logs USING gin (metadata jsonb_path_ops)"],
        ["DROP INDEX bench_metadata"],
    ),
    "message trigram GIN": (
        [
            "CREATE EXTENSION IF NOT EXISTS pg_trgm",
            "CREATE INDEX bench_trgm ON logs USING gin (message gin_trgm_ops)",
        ],
        ["DROP INDEX bench_trgm"],
    ),
    # The search index's statement trigger names metadata (schema 0008): off while the type changes.
    "metadata json": (
        ["DROP TRIGGER logs_search_dirty ON logs", "ALTER TABLE logs ALTER COLUMN metadata TYPE json"],
        ["ALTER TABLE logs ALTER COLUMN metadata TYPE jsonb USING metadata::jsonb", _SEARCH_TRIGGER],
    ),
}
# What each choice buys at query time, on a table of QUERY_ROWS rows: (SQL, parameter per run).
QUERIES: dict[str, tuple[str, Callable[[Sequence[Row], int], Any]]] = {
    "trace_id lookup": (
        "SELECT count(*) FROM logs WHERE trace_id = $1 AND NOT deleted",
        lambda rows, i: rows[i * 97 % len(rows)][6],
    ),
    "service page": (
        (
            "SELECT count(*) FROM (SELECT id FROM logs WHERE service = $1 AND NOT deleted"
            " ORDER BY created_at DESC, id DESC LIMIT 100) AS page"
        ),
        lambda rows, i: rows[i * 89 % len(rows)][3],
    ),
    "message substring": (
        "SELECT count(*) FROM (SELECT id FROM logs WHERE message ILIKE $1 AND NOT deleted LIMIT 100) AS page",
        lambda rows, i: "%declined%",
    ),
    "metadata filter": (
        "SELECT count(*) FROM logs WHERE metadata::jsonb @> $1::jsonb AND NOT deleted",
        lambda rows, i: '{"region": "eu-west-1"}',
    ),
}
QUERY_ROWS = 100_000
QUERY_RUNS = 15


async def insert(conn: asyncpg.Connection, rows: Sequence[Row]) -> int:
    async with conn.transaction():
        for row in rows:
            await conn.execute(INSERT, *row)
    return len(rows)


async def executemany(conn: asyncpg.Connection, rows: Sequence[Row]) -> int:
    async with conn.transaction():
        await conn.executemany(INSERT, rows)
    return len(rows)


async def unnest(conn: asyncpg.Connection, rows: Sequence[Row]) -> int:
    async with conn.transaction():
        await conn.execute(UNNEST, *[list(column) for column in zip(*rows)])
    return len(rows)


async def copy(conn: asyncpg.Connection, rows: Sequence[Row]) -> int:
    async with conn.transaction():
        await conn.copy_records_to_table("logs", records=rows, columns=COLUMNS)
    return len(rows)


METHODS: dict[str, Method] = {"insert": insert, "executemany": executemany, "unnest": unnest, "copy": copy}


async def connect(dsn: str) -> asyncpg.Connection:
    """A connection set up as the server's are (app.database.init_connection)."""
    conn = await asyncpg.connect(dsn)
    await init_connection(conn)
    return conn


class RowCountMismatch(AssertionError):
    """The table does not hold what the methods said they wrote: the measurement is void."""


@dataclass
class Timing:
    rows: int
    seconds: float
    latencies: list[float]


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(name: str, batch: int, timing: Timing, **extra: Any) -> dict[str, Any]:
    ms = [latency * 1000 for latency in timing.latencies]
    return {
        "method": name, "batch": batch, "rows": timing.rows, "batches": len(ms), "seconds": round(timing.seconds, 3),
        "rows_per_s": round(timing.rows / timing.seconds, 1),
        "p50_ms": round(percentile(ms, 50), 3), "p90_ms": round(percentile(ms, 90), 3),
        "p99_ms": round(percentile(ms, 99), 3), **extra,
    }  # fmt: skip


async def verify_count(conn: asyncpg.Connection, expected: int) -> None:
    stored = await conn.fetchval("SELECT count(*) FROM logs")
    if stored != expected:
        raise RowCountMismatch(f"logs holds {stored} rows but {expected} were written")


async def timed(
    conns: Sequence[asyncpg.Connection],
    method: Method,
    batches: Callable[[], Sequence[Row]],
    warmup: float,
    duration: float,
) -> tuple[Timing, int]:
    """Each connection writes batches back to back: `warmup` seconds unmeasured, then `duration` measured.

    Returns the measured timing and every row written (warm-up included), for the count check.
    """
    written = 0
    latencies: list[float] = []
    measured = 0

    async def worker(conn: asyncpg.Connection, until: float, record: bool) -> None:
        nonlocal written, measured
        while True:
            rows = batches()
            started = time.perf_counter()
            n = await method(conn, rows)
            finished = time.perf_counter()
            written += n
            if record:
                latencies.append(finished - started)
                measured += n
            if finished >= until:
                return

    if warmup > 0:
        await asyncio.gather(*(worker(c, time.perf_counter() + warmup, False) for c in conns))
    started = time.perf_counter()
    await asyncio.gather(*(worker(c, started + duration, True) for c in conns))
    return Timing(measured, time.perf_counter() - started, latencies), written


def cycler(pool: Sequence[Row], batch: int) -> Callable[[], Sequence[Row]]:
    """Batches of `batch` consecutive rows from `pool`, wrapping around."""
    position = 0

    def next_batch() -> Sequence[Row]:
        nonlocal position
        if position + batch > len(pool):
            position = 0
        rows = pool[position : position + batch]
        position += batch
        return rows

    return next_batch


async def run_arm(
    conn: asyncpg.Connection, name: str, method: Method, pool: Sequence[Row], batch: int, warmup: float, duration: float,
    **extra: Any,
) -> dict[str, Any]:  # fmt: skip
    await conn.execute("TRUNCATE logs")
    timing, written = await timed([conn], method, cycler(pool, batch), warmup, duration)
    await verify_count(conn, written)
    return summary(name, batch, timing, **extra)


async def suite(dsn: str, pool: Sequence[Row], batch_sizes: Sequence[int], warmup: float, duration: float,
                progress: Callable[[str], None]) -> list[dict[str, Any]]:  # fmt: skip
    """Every method at every batch size on our schema, then COPY at batch 1000 under each schema choice."""
    results = []
    conn = await connect(dsn)
    try:
        for batch in batch_sizes:
            for name, method in METHODS.items():
                progress(f"db {name} batch {batch}")
                results.append(
                    await run_arm(conn, name, method, pool, batch, warmup, duration, schema="ours")
                )
    finally:
        await conn.close()
    for schema in SCHEMAS:
        progress(f"db copy batch 1000, schema: {schema}")
        results.append(await schema_arm(dsn, schema, pool, warmup, duration))
    return results


async def schema_arm(
    dsn: str, schema: str, pool: Sequence[Row], warmup: float, duration: float
) -> dict[str, Any]:
    """COPY at batch 1000 with one schema choice applied, then the queries it is meant to serve."""
    setup, undo = SCHEMAS[schema]
    admin = await connect(dsn)
    try:
        await admin.execute("TRUNCATE logs")
        for statement in setup:
            await admin.execute(statement)
        try:
            # A connection of its own: asyncpg caches the table's column types per connection.
            conn = await connect(dsn)
            try:
                result = await run_arm(conn, "copy", copy, pool, 1000, warmup, duration, schema=schema)
                result["queries"] = await query_times(conn, pool)
            finally:
                await conn.close()
        finally:
            await admin.execute("TRUNCATE logs")
            for statement in undo:
                await admin.execute(statement)
    finally:
        await admin.close()
    return result


async def query_times(conn: asyncpg.Connection, pool: Sequence[Row]) -> dict[str, Any]:
    """p50 of each query over QUERY_RUNS runs on a table refilled to exactly QUERY_ROWS rows."""
    await conn.execute("TRUNCATE logs")
    next_batch = cycler(pool, 1000)
    for _ in range(QUERY_ROWS // 1000):
        await copy(conn, next_batch())
    await conn.execute("ANALYZE logs")
    times = {"rows": QUERY_ROWS}
    for name, (sql, parameter) in QUERIES.items():
        runs = []
        for i in range(QUERY_RUNS):
            started = time.perf_counter()
            await conn.fetchval(sql, parameter(pool, i))
            runs.append((time.perf_counter() - started) * 1000)
        times[f"{name} p50_ms"] = round(percentile(runs, 50), 3)
    return times
