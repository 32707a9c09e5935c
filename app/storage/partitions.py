"""Daily partitions of `logs`: `logs_pYYYYMMDD` holds [that day 00:00 UTC, the next day 00:00 UTC).

Made ahead of time (today and the next AHEAD_DAYS days, by the maintenance loop) and on demand (the writer
asks for the days of the rows it is about to COPY, before it begins the COPY's transaction). A partition is
made as PostgreSQL's documentation advises for a live table: `CREATE TABLE … (LIKE logs)`, then
`ATTACH PARTITION`, which takes only a SHARE UPDATE EXCLUSIVE lock on `logs` (ingest's COPY is not blocked;
`CREATE TABLE … PARTITION OF` would take ACCESS EXCLUSIVE). An advisory lock makes the servers and workers
that want the same partition at once take turns; `lock_timeout` keeps a long query from stalling it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

import asyncpg

log = logging.getLogger(__name__)

AHEAD_DAYS = 3
PREFIX = "logs_p"
# Shared by every instance of this app; different from app/storage/migrations.py's.
_LOCK_KEY = 0x10654E5B


def name(day: date) -> str:
    return f"{PREFIX}{day:%Y%m%d}"


def day_of(moment: datetime) -> date:
    """The UTC day a created_at falls on."""
    return moment.astimezone(UTC).date()


def days_between(first: datetime, last: datetime) -> list[date]:
    start, end = day_of(first), day_of(last)
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


async def existing(conn: asyncpg.Connection) -> dict[date, str]:
    """Every partition of logs, by its day."""
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'logs'::regclass"
    )
    days = {}
    for row in rows:
        relname: str = row["relname"]
        if relname.startswith(PREFIX):
            days[datetime.strptime(relname.removeprefix(PREFIX), "%Y%m%d").date()] = relname
    return days


async def create(conn: asyncpg.Connection, day: date, *, attempts: int = 20) -> bool:
    """Make `day`'s partition unless it exists; True when this call made it."""
    table = name(day)
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    end = start + timedelta(days=1)
    for attempt in range(attempts):
        try:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
                if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table):
                    return False
                await conn.execute(
                    f"CREATE TABLE {table} (LIKE logs INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
                )
                # The new table is empty, so ATTACH's check of its rows is instant; only its lock can wait.
                await conn.execute("SET LOCAL lock_timeout = '2s'")
                await conn.execute(
                    f"ALTER TABLE logs ATTACH PARTITION {table} FOR VALUES FROM ('{start.isoformat()}')"
                    f" TO ('{end.isoformat()}')"
                )
            log.info("partition created", extra={"partition": table})
            return True
        except asyncpg.LockNotAvailableError:
            # A long statement holds a lock ATTACH needs: step back and try again, never queue behind it
            # (queued, ATTACH would block every COPY that comes after it).
            await asyncio.sleep(min(0.05 * 2**attempt, 2.0))
    raise TimeoutError(f"could not attach partition {table}: logs stayed locked")


class Partitions:
    """What partitions exist, as this process last saw them, and making the missing ones."""

    def __init__(self) -> None:
        self.known: set[date] = set()
        self._lock = asyncio.Lock()

    def has(self, days: Iterable[date]) -> bool:
        return set(days) <= self.known

    async def ensure(self, pool: asyncpg.Pool, days: Iterable[date]) -> None:
        wanted = set(days)
        if wanted <= self.known:
            return
        async with self._lock, pool.acquire() as conn:
            self.known |= set(await existing(conn))
            for day in sorted(wanted - self.known):
                await create(conn, day)
                self.known.add(day)

    async def ahead(self, pool: asyncpg.Pool, today: date | None = None) -> None:
        today = today or datetime.now(UTC).date()
        await self.ensure(pool, [today + timedelta(days=n) for n in range(AHEAD_DAYS + 1)])

    def forget_names(self, names: Iterable[str]) -> None:
        """Partitions dropped: made again on demand if a row for their day ever arrives."""
        self.known -= {datetime.strptime(n.removeprefix(PREFIX), "%Y%m%d").date() for n in names}


async def detach(conn: asyncpg.Connection, table: str) -> None:
    """Take a partition out of logs without blocking ingest (`DETACH … CONCURRENTLY`, which cannot run in a
    transaction); one whose detach was interrupted is left "pending" and is finished instead. A table that
    is no partition (already detached, or gone) is left as it is."""
    pending = await conn.fetchval(
        "SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = to_regclass($1)", table
    )
    if pending:
        await conn.execute(f"ALTER TABLE logs DETACH PARTITION {table} FINALIZE")
    elif pending is not None:
        await conn.execute(f"ALTER TABLE logs DETACH PARTITION {table} CONCURRENTLY")
