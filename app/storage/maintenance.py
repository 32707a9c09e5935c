"""Housekeeping that runs off the request path, one process at a time:

* partitions for today and the next days (app/storage/partitions.py),
* retention: partitions older than RETENTION_DAYS dropped (app/storage/retention.py),
* cold storage: closed days older than ARCHIVE_AFTER_DAYS moved to Parquet, archived days past RETENTION_DAYS
  removed (app/storage/archive.py),
* /stats's summary compacted (app/storage/summary.py),
* the search index rebuilt for days written around it, and closed days' small blocks compacted
  (app/search/build.py),
* idempotency keys and bulk document ids past IDEMPOTENCY_TTL forgotten (app/intake/idempotency.py,
  app/intake/documents.py).

uvicorn runs it every few minutes in each worker (app/main.py's lifespan), and a session advisory lock lets
only one of them (across servers too) do a pass at a time; Lambda runs it when an EventBridge schedule
invokes the handler (template.yaml, handler.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from app.database import Database
from app.intake import documents, idempotency
from app.search import build
from app.storage import archive, retention, summary

log = logging.getLogger(__name__)

INTERVAL = 300.0
# Shared by every instance of this app; different from the other advisory lock keys.
LOCK_KEY = 0x10654E5C


async def run_once(database: Database) -> dict[str, Any]:
    """One pass; returns what it did, or {"skipped": ...} when another process holds the lock."""
    pool = await database.pool()
    settings = database.settings
    await database.partitions.ahead(pool)
    async with pool.acquire() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY):
            return {"skipped": "another process is doing housekeeping"}
        try:
            dropped = await retention.run(conn, settings.retention_days)
            database.partitions.forget_names(dropped)
            cold = await archive.housekeeping(conn, settings)
            database.partitions.forget_names(m["partition"] for m in cold.get("archived", []))
            compacted = await summary.compact(conn)
            # Off, nothing is indexed and no reader looks: rebuilding would only be undone by the next write.
            reindexed = (
                await build.backfill(conn) + await build.compact(conn) if settings.search_index else []
            )
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    pruned = await idempotency.prune(pool, settings.idempotency_ttl)
    ids_pruned = await documents.prune(pool, settings.idempotency_ttl)
    done = {
        "partitions_dropped": dropped,
        "summary_rows_compacted": compacted,
        "idempotency_keys_pruned": pruned,
        "bulk_ids_pruned": ids_pruned,
        "search_reindexed": reindexed,
        **cold,
    }
    if dropped or pruned or ids_pruned or reindexed or cold.get("archived") or cold.get("archive_expired"):
        log.info("housekeeping", extra=done)
    return done


async def run_forever(database: Database, interval: float = INTERVAL) -> None:
    while True:
        try:
            await run_once(database)
        except Exception as exc:  # noqa: BLE001 - the database may be away; the next round tries again
            log.warning("housekeeping failed: %s: %s", type(exc).__name__, exc)
        await asyncio.sleep(interval)
