"""Retention: whole daily partitions older than RETENTION_DAYS are dropped, never deleted row by row.

A pass detaches each old partition with `DETACH PARTITION … CONCURRENTLY` (ingest is not blocked), then
drops it and removes its days from /stats's summary and the search index in one transaction. It takes milliseconds whatever
the partitions hold. Run by the maintenance loop (one process at a time: app/storage/maintenance.py), by
Lambda's schedule, or by hand: `python -m app retention [--dry-run]`.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta

import asyncpg

from app.storage import partitions, summary

log = logging.getLogger(__name__)


def cutoff(retention_days: int, today: date | None = None) -> date:
    """Partitions of days before this one hold only logs older than the retention: they go."""
    return (today or datetime.now(UTC).date()) - timedelta(days=retention_days)


async def expired(
    conn: asyncpg.Connection, retention_days: int, today: date | None = None
) -> dict[date, str]:
    if retention_days <= 0:
        return {}
    limit = cutoff(retention_days, today)
    return {day: name for day, name in sorted((await partitions.existing(conn)).items()) if day < limit}


async def run(
    conn: asyncpg.Connection, retention_days: int, *, dry_run: bool = False, today: date | None = None
) -> list[str]:
    """Drop the expired partitions (or, with dry_run, only list them); return their names."""
    old = await expired(conn, retention_days, today)
    if dry_run:
        return list(old.values())
    for day, name in old.items():
        await partitions.detach(conn, name)
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        async with conn.transaction():
            await conn.execute(f"DROP TABLE IF EXISTS {name}")
            await conn.execute(
                "DELETE FROM log_counts WHERE hour >= $1 AND hour < $2", start, start + timedelta(days=1)
            )
            await conn.execute("DELETE FROM search_blocks WHERE day = $1", day)
            await conn.execute("DELETE FROM search_days WHERE day = $1", day)
            # The day's minutes (log_minutes is keyed by a minute's end: summary.DAY_MINUTES).
            await conn.execute(
                f"DELETE FROM log_minutes WHERE {summary.DAY_MINUTES}", start, start + timedelta(days=1)
            )
        log.info("partition dropped", extra={"partition": name})
    return list(old.values())
