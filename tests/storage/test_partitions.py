"""Daily partitions against a real PostgreSQL: ahead of time, on demand, by several servers at once, and
the upgrade of a database built by the previous migrations with every row kept."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from app.config import IngestMode
from app.database import Database
from app.intake.rows import parse
from app.intake.writer import Batch, create
from app.storage import migrations, partitions
from tests.support import DB, log_entry, make_settings

TODAY = datetime.now(UTC).date()


def test_ahead_makes_today_and_the_next_days(db: DB, database_url: str) -> None:
    async def run() -> dict[date, str]:
        database = Database(make_settings(database_url))
        try:
            pool = await database.pool()
            await database.partitions.ahead(pool)
            async with pool.acquire() as conn:
                return await partitions.existing(conn)
        finally:
            await database.close()

    days = asyncio.run(run())
    for n in range(partitions.AHEAD_DAYS + 1):
        day = TODAY + timedelta(days=n)
        assert days[day] == f"logs_p{day:%Y%m%d}"


def test_a_row_for_a_day_without_a_partition_gets_one(db: DB, database_url: str) -> None:
    day = TODAY - timedelta(days=12)
    created = datetime(day.year, day.month, day.day, 13, 30, tzinfo=UTC)
    db.fetch(f"DROP TABLE IF EXISTS {partitions.name(day)}")

    async def run() -> None:
        settings = make_settings(database_url)
        database = Database(settings)
        writer = create(settings, database, IngestMode.group)
        try:
            raw = json.dumps({"logs": [log_entry(created_at=created.isoformat())] * 3}).encode()
            await writer.write(Batch(parse(raw, 1000), b"ok"))
        finally:
            await writer.close()
            await database.close()

    asyncio.run(run())
    rows = db.fetch(f"SELECT created_at FROM {partitions.name(day)}")
    assert [r["created_at"] for r in rows] == [created] * 3


def test_servers_asking_for_the_same_partition_at_once_make_it_once(db: DB, database_url: str) -> None:
    day = TODAY - timedelta(days=20)
    db.fetch(f"DROP TABLE IF EXISTS {partitions.name(day)}")

    async def run() -> list[Any]:
        databases = [Database(make_settings(database_url)) for _ in range(4)]
        try:
            pools = [await database.pool() for database in databases]
            return await asyncio.gather(
                *(
                    database.partitions.ensure(pool, [day])
                    for database, pool in zip(databases, pools, strict=True)
                ),
                return_exceptions=True,
            )
        finally:
            for database in databases:
                await database.close()

    assert asyncio.run(run()) == [None] * 4
    attached = db.fetch(
        "SELECT count(*) AS n FROM pg_inherits WHERE inhrelid = to_regclass($1)", partitions.name(day)
    )
    assert attached[0]["n"] == 1


def _database_url(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture
def old_database(database_url: str) -> str:
    """A fresh database with only the migrations of the previous release applied."""
    name = "upgrade_from_0002"

    async def build() -> None:
        admin = await asyncpg.connect(database_url)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {name}")
            await admin.execute(f"CREATE DATABASE {name}")
        finally:
            await admin.close()
        conn = await asyncpg.connect(_database_url(database_url, name))
        try:
            await conn.execute(
                "CREATE TABLE schema_migrations (version TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            for version, sql in migrations.available():
                if version < "0003":
                    await conn.execute(sql)
                    await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
        finally:
            await conn.close()

    asyncio.run(build())
    return _database_url(database_url, name)


def test_upgrade_keeps_every_row(old_database: str) -> None:
    old = DB(old_database)
    # What the previous release stored: any created_at at all (1970 included), soft deletes, metadata.
    old.fetch(
        """
        INSERT INTO logs (created_at, level, log_type, service, message, metadata, deleted)
        SELECT t, (ARRAY['INFO','ERROR','WARN']::log_level[])[1 + i % 3], 'BACKEND',
               'svc-' || (i % 4), 'm' || i, jsonb_build_object('i', i), i % 10 = 0
        FROM generate_series(1, 500) AS i,
             LATERAL (SELECT CASE WHEN i = 1 THEN timestamptz '1970-01-01 00:00:00+00'
                                  ELSE now() - (i || ' hours')::interval END AS t) AS x
        """
    )
    before = [
        tuple(r)
        for r in old.fetch("SELECT id, created_at, service, message, deleted, metadata FROM logs ORDER BY id")
    ]
    old_max_id = max(r[0] for r in before)

    async def upgrade() -> list[str]:
        conn = await asyncpg.connect(old_database)
        try:
            return await migrations.apply(conn)
        finally:
            await conn.close()

    applied = asyncio.run(upgrade())
    assert applied and applied[0].startswith("0003")
    after = [
        tuple(r)
        for r in old.fetch("SELECT id, created_at, service, message, deleted, metadata FROM logs ORDER BY id")
    ]
    assert after == before
    assert old.fetch("SELECT relkind::text AS k FROM pg_class WHERE relname = 'logs'")[0]["k"] == "p"
    assert old.fetch("SELECT to_regclass('logs_p19700101') IS NOT NULL AS ok")[0]["ok"]
    # The summary starts exact, and new rows continue the old ids.
    counted = old.fetch("SELECT sum(n) AS n FROM log_counts")[0]["n"]
    assert counted == old.fetch("SELECT count(*) AS n FROM logs WHERE NOT deleted")[0]["n"] == 450
    old.fetch(
        f"CREATE TABLE IF NOT EXISTS logs_p{TODAY:%Y%m%d} PARTITION OF logs FOR VALUES FROM ('{TODAY}') TO ('{TODAY + timedelta(days=1)}')"
    )
    new_id = old.fetch(
        "INSERT INTO logs (log_type, service, message) VALUES ('BACKEND', 's', 'm') RETURNING id"
    )
    assert new_id[0]["id"] > old_max_id
