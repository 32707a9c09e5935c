"""Where a lone batch's time goes: the server's steps for one batch of 1000, timed one after another in
this process against the bench database, beside a raw COPY of the same rows in a transaction.

Part of the profile suite: the HTTP arm `b1000-c1` says how a lone batch compares with a raw COPY end to
end; this says which step the difference is made of (wall time, p50 of `RUNS` batches).
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from typing import Any

from app import heap
from app.config import Settings
from app.database import Database
from app.intake import rows, writer
from app.storage import summary
from bench.data import LogFactory, body

RUNS = 40
STEPS = ("parse (prepare + build)", "pool acquire + BEGIN", "COPY", "summary upsert", "COMMIT")


async def _measure(dsn: str, runs: int) -> dict[str, Any]:
    database = Database(Settings(_env_file=None, database_url=dsn, retention_days=0))  # type: ignore[call-arg]
    pool = await database.pool()
    await database.partitions.ahead(pool)
    factory = LogFactory(17)
    bodies = [body(factory.batch(1000)) for _ in range(10)]
    times: dict[str, list[float]] = {
        name: [] for name in (*STEPS, "raw COPY in a transaction", "whole", "stream")
    }
    clock = time.perf_counter
    try:
        for n in range(runs):
            raw = bodies[n % len(bodies)]
            started = clock()
            built = rows.parse(raw, 1000)
            times["parse (prepare + build)"].append(clock() - started)
            started = clock()
            async with pool.acquire() as conn:
                transaction = conn.transaction()
                await transaction.start()
                times["pool acquire + BEGIN"].append(clock() - started)
                started = clock()
                await conn.copy_records_to_table("logs", records=built, columns=rows.COLUMNS)
                times["COPY"].append(clock() - started)
                started = clock()
                await summary.add(conn, summary.counts(built))
                times["summary upsert"].append(clock() - started)
                started = clock()
                await transaction.commit()
                times["COMMIT"].append(clock() - started)
            started = clock()
            async with pool.acquire() as conn, conn.transaction():
                await conn.copy_records_to_table("logs", records=built, columns=rows.COLUMNS)
            times["raw COPY in a transaction"].append(clock() - started)
            # The server's two paths for a lone batch, whole: parse then commit (before round two), and
            # streamed (rows built while the chunk before them is written).
            started = clock()
            await writer.commit(database, [writer.Batch(rows.parse(raw, 1000), b"")])
            times["whole"].append(clock() - started)
            started = clock()
            await writer.stream(database, writer.Batch(rows.prepare(raw, 1000), b""))
            times["stream"].append(clock() - started)
        async with pool.acquire() as conn:
            await conn.execute("TRUNCATE logs, log_counts, log_minutes")
    finally:
        await database.close()
    return {name: round(statistics.median(values) * 1000, 2) for name, values in times.items()}


def run(dsn: str, runs: int = RUNS) -> dict[str, Any]:
    """p50 ms of each step, and of the two paths whole: `whole` (parse, then `writer.commit`) and `stream`."""
    threshold = gc.get_threshold()
    heap.settle()  # the collector as the server sets it; this process's own settings restored after
    try:
        p50 = asyncio.run(_measure(dsn, runs))
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
    return {"runs": runs, "p50_ms": p50}
