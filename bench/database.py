"""The lab's PostgreSQL: the app's resolution (DATABASE_URL | DATABASE_SECRET_ARN | DATABASE_HOST |
embedded), but always on a database of its own, `logs_bench` by default (BENCH_DATABASE_NAME), created when
missing, because the lab truncates its logs table."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from app.config import Settings
from app.database import Source, resolve
from app.storage import migrations, partitions

DEFAULT_NAME = "logs_bench"


async def prepare(settings: Settings | None = None) -> Source:
    """Resolve, create the bench database if needed, apply the app's migrations; return where it is."""
    settings = settings or Settings()
    name = os.environ.get("BENCH_DATABASE_NAME", DEFAULT_NAME)
    if settings.database_configured:
        home = resolve(settings)  # the configured database: used only to create ours beside it
        dsn = _with_database(home.dsn, name)
        await _create_database(home.dsn, name)
        source = Source(dsn, f"{home.description}, database {name}")
    else:
        embedded = resolve(settings.model_copy(update={"database_name": name}))
        source = Source(embedded.dsn, f"{embedded.description}, database {name}")
    conn = await asyncpg.connect(source.dsn)
    try:
        await migrations.apply(conn)
        await make_partitions(conn)
    finally:
        await conn.close()
    return source


async def make_partitions(conn: asyncpg.Connection, today: date | None = None) -> None:
    """The days the lab's rows fall on (the generator's times are recent): two back, the app's days ahead."""
    today = today or datetime.now(UTC).date()
    for n in range(-2, partitions.AHEAD_DAYS + 1):
        await partitions.create(conn, today + timedelta(days=n))


def _with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def _create_database(dsn: str, name: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
