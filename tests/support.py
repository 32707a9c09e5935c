"""Helpers shared by the tests: direct SQL on the test database, settings, sample logs."""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

import asyncpg

from app.config import Settings


def run(coro: Any) -> Any:
    """Run one coroutine on a fresh loop (tests are synchronous; the app runs on its own loop). Where this
    thread already runs a loop (Playwright's sync API keeps one), on a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _fetch(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


class DB:
    """Direct SQL against the test database, to check what the server really stored."""

    def __init__(self, url: str) -> None:
        self.url = url

    def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return run(_fetch(self.url, sql, *args))

    def count(self) -> int:
        return self.fetch("SELECT count(*) AS n FROM logs")[0]["n"]


def make_settings(database_url: str, **overrides: Any) -> Settings:
    # Retention off: the housekeeping an app starts must not drop the old partitions a test made on purpose.
    values: dict[str, Any] = {
        "database_url": database_url,
        "db_pool_min_size": 1,
        "db_pool_max_size": 4,
        "retention_days": 0,
    }
    return Settings(_env_file=None, **{**values, **overrides})  # type: ignore[call-arg]


def log_entry(**fields: Any) -> dict[str, Any]:
    return {"level": "INFO", "service": "checkout", "message": "order placed", **fields}
