"""Retention against a real PostgreSQL: whole old partitions dropped, /stats adjusted, the CLI, Lambda."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg
from fastapi.testclient import TestClient

from app.config import IngestMode
from app.storage import partitions, retention
from tests.storage.test_summary import plain_stats, write_concurrently
from tests.support import DB, log_entry

ROOT = Path(__file__).parents[2]
TODAY = datetime.now(UTC).date()
OLD_DAYS = [TODAY - timedelta(days=n) for n in (45, 40, 31)]
KEPT_DAYS = [TODAY - timedelta(days=n) for n in (29, 2, 0)]


def fill(db: DB, database_url: str) -> None:
    """Rows on old days (written as an import would, straight into their partitions) and on recent ones."""
    for day in OLD_DAYS:
        db.fetch(f"DROP TABLE IF EXISTS {partitions.name(day)}")
    entries = [log_entry(created_at=f"{day}T12:00:00Z", service=f"s{i}") for i, day in enumerate(KEPT_DAYS)]
    write_concurrently(
        database_url, [json.dumps({"logs": entries * 4}).encode()], IngestMode.direct, servers=1
    )
    for day in OLD_DAYS:
        db.fetch(
            f"CREATE TABLE {partitions.name(day)} PARTITION OF logs FOR VALUES FROM ('{day}T00:00:00Z')"
            f" TO ('{day + timedelta(days=1)}T00:00:00Z')"
        )
        db.fetch(
            "INSERT INTO logs (created_at, log_type, service, message) SELECT $1, 'BACKEND', 'old', 'm'"
            " FROM generate_series(1, 7)",
            datetime(day.year, day.month, day.day, 6, tzinfo=UTC),
        )
        db.fetch(
            "INSERT INTO log_counts (hour, service, level, shard, n) VALUES ($1, 'old', 'INFO', 0, 7)",
            datetime(day.year, day.month, day.day, 6, tzinfo=UTC),
        )


async def run_retention(database_url: str, dry_run: bool, days: int = 30) -> list[str]:
    conn = await asyncpg.connect(database_url)
    try:
        return await retention.run(conn, days, dry_run=dry_run)
    finally:
        await conn.close()


def present(db: DB) -> set[date]:
    names = {
        r["relname"]
        for r in db.fetch("SELECT relname FROM pg_class WHERE relname LIKE 'logs_p%' AND relkind = 'r'")
    }
    return {day for day in OLD_DAYS + KEPT_DAYS if partitions.name(day) in names}


def test_old_partitions_are_dropped_and_stats_follow(client: TestClient, db: DB, database_url: str) -> None:
    fill(db, database_url)
    assert client.get("/stats").json()["total_logs"] == 12 + 21
    assert asyncio.run(run_retention(database_url, dry_run=True)) == [
        partitions.name(d) for d in sorted(OLD_DAYS)
    ]
    assert present(db) == set(OLD_DAYS + KEPT_DAYS)  # a dry run drops nothing
    dropped = asyncio.run(run_retention(database_url, dry_run=False))
    assert dropped == [partitions.name(d) for d in sorted(OLD_DAYS)]
    assert present(db) == set(KEPT_DAYS)
    assert db.count() == 12
    assert client.get("/stats").json() == plain_stats(db)
    assert asyncio.run(run_retention(database_url, dry_run=False)) == []


def test_zero_keeps_everything(db: DB, database_url: str) -> None:
    fill(db, database_url)
    assert asyncio.run(run_retention(database_url, dry_run=False, days=0)) == []
    assert present(db) == set(OLD_DAYS + KEPT_DAYS)


def test_the_cli_lists_then_drops(db: DB, database_url: str, tmp_path: Path) -> None:
    fill(db, database_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "LOGSAVE_"))}
    env.update(DATABASE_URL=database_url, PYTHONPATH=str(ROOT), LOG_LEVEL="WARNING", RETENTION_DAYS="30")

    def cli(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "app", "retention", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return result.stdout

    listed = cli("--dry-run")
    assert "would drop: 3" in listed and all(partitions.name(d) in listed for d in OLD_DAYS)
    assert present(db) == set(OLD_DAYS + KEPT_DAYS)
    done = cli()
    assert "dropped: 3" in done
    assert present(db) == set(KEPT_DAYS)
