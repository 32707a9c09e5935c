"""Versioned schema: every `app/storage/schema/NNNN_*.sql` file is applied once, in order, and recorded.

A later change to the table is a new file, never an edit of an applied one. Applying takes an advisory
lock, so several workers or Lambda containers starting together do not race.
"""

from __future__ import annotations

from importlib import resources

import asyncpg

# Any constant shared by every instance of this app; it only has to differ from other users of the lock.
_LOCK_KEY = 0x10654E5A


def available() -> list[tuple[str, str]]:
    """(version, sql) for every migration file shipped with the app, in order."""
    files = [f for f in resources.files("app.storage.schema").iterdir() if f.name.endswith(".sql")]
    return [
        (f.name.removesuffix(".sql"), f.read_text(encoding="utf-8"))
        for f in sorted(files, key=lambda f: f.name)
    ]


async def apply(conn: asyncpg.Connection) -> list[str]:
    """Apply the migrations this database has not seen; return their versions."""
    applied: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, sql in available():
            if version in done:
                continue
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            applied.append(version)
    return applied
