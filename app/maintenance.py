"""Housekeeping that runs off the request path: forget idempotency keys past their TTL.

uvicorn runs it every few minutes in each worker (app/main.py's lifespan); Lambda runs it when an
EventBridge schedule invokes the handler (template.yaml, handler.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from app import idempotency
from app.database import Database

log = logging.getLogger(__name__)


async def run_once(database: Database) -> dict[str, Any]:
    """One pass; returns what it did."""
    pruned = await idempotency.prune(await database.pool(), database.settings.idempotency_ttl)
    if pruned:
        log.info("idempotency keys pruned", extra={"pruned": pruned})
    return {"idempotency_keys_pruned": pruned}


async def run_forever(database: Database, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await run_once(database)
        except Exception as exc:  # noqa: BLE001 - the database may be away; the next round tries again
            log.warning("maintenance failed: %s: %s", type(exc).__name__, exc)
