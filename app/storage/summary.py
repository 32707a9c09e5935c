"""The summary behind GET /stats: rows per UTC hour, service and level, in `log_counts`.

The writer adds each group's counts in the same transaction as its COPY (`add`), so counts and rows commit
together, and /stats never scans `logs` (`read`). Concurrent writers would wait on each other's row locks
of the same (hour, service, level) until their commits; each transaction therefore writes to a shard of
its own (its backend's pid modulo 16), and its keys go in sorted order so two writers never deadlock.
`compact` folds the shards, and days older than yesterday, into one row each; retention deletes the counts
of the days it drops in the same transaction as the drop (app/storage/retention.py).

`recent_24h` is exact: the full hours of the last day from the summary, plus a count of the rows between
24 hours ago and the next full hour from `logs` itself (at most one hour of rows, read by the primary key).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from app.models import ServiceCount, Stats, Timeline, TimelinePoint
from app.search import build

SHARDS = 16

_ADD = f"""
INSERT INTO log_counts AS c (hour, service, level, shard, n)
SELECT to_timestamp(h * 3600), s, l::log_level, (pg_backend_pid() % {SHARDS})::smallint, n
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[]) AS t(h, s, l, n)
ON CONFLICT (hour, service, level, shard) DO UPDATE SET n = c.n + EXCLUDED.n
"""


def counts(rows: Sequence[tuple[Any, ...]]) -> Counter[tuple[int, str, str]]:
    """(hour since the epoch, service, level) -> rows, for rows in COPY column order."""
    return Counter((int(row[0].timestamp()) // 3600, row[3], row[1]) for row in rows)


async def add(
    conn: asyncpg.Connection, counted: Counter[tuple[int, str, str]], blocks: build.Blocks | None = None
) -> None:
    """Add `counts(rows)` of the rows this transaction wrote; with `blocks`, record their search index in
    the same statement (app/search/build.py: no round trip of its own)."""
    keys = sorted(counted.items())
    columns = [
        [k[0] for k, _ in keys],
        [k[1] for k, _ in keys],
        [k[2] for k, _ in keys],
        [n for _, n in keys],
    ]
    if blocks is None:
        await conn.execute(_ADD, *columns)
    else:
        await conn.execute(build.RECORD + _ADD, *columns, *blocks.params())


_TOTALS = "SELECT service, level::text AS level, sum(n) AS n FROM log_counts GROUP BY 1, 2 HAVING sum(n) <> 0"
_RECENT = """
SELECT (SELECT coalesce(sum(n), 0) FROM log_counts WHERE hour >= date_trunc('hour', $1::timestamptz) + interval '1 hour')
     + (SELECT count(*) FROM logs WHERE created_at >= $1 AND NOT deleted
          AND created_at < date_trunc('hour', $1::timestamptz) + interval '1 hour') AS n
"""


async def read(conn: asyncpg.Connection) -> Stats:
    """Exact counts from the summary, in one snapshot."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        totals = await conn.fetch(_TOTALS)
        recent = await conn.fetchval(_RECENT, await conn.fetchval("SELECT now() - interval '24 hours'"))
    by_service: dict[str, int] = {}
    by_level: dict[str, int] = {}
    for row in totals:
        by_service[row["service"]] = by_service.get(row["service"], 0) + row["n"]
        by_level[row["level"]] = by_level.get(row["level"], 0) + row["n"]
    services = sorted(((s, n) for s, n in by_service.items() if n), key=lambda item: (-item[1], item[0]))
    return Stats(
        total_logs=sum(by_service.values()),
        services=[ServiceCount(service=name, count=count) for name, count in services],
        by_level={level: n for level, n in sorted(by_level.items()) if n},
        recent_24h=recent,
    )


MINUTES_UP_TO = timedelta(hours=6)
_BY_MINUTE = """
SELECT date_trunc('minute', created_at) AS at, level::text AS level, count(*) AS n
FROM logs WHERE created_at >= $1 AND created_at < $2 AND NOT deleted GROUP BY 1, 2 ORDER BY 1, 2
"""
_BY_HOUR = """
SELECT hour AS at, level::text AS level, sum(n) AS n
FROM log_counts WHERE hour >= date_trunc('hour', $1::timestamptz) AND hour < $2 GROUP BY 1, 2 HAVING sum(n) <> 0
ORDER BY 1, 2
"""


async def timeline(
    conn: asyncpg.Connection,
    since: datetime,
    until: datetime,
    archived: Sequence[tuple[datetime, str, int]] = (),
) -> Timeline:
    """Logs per minute (ranges up to MINUTES_UP_TO, from the rows) or per hour (from the summary) by level.
    `archived`: per-minute counts of the rows of the range that live in the archive (app/storage/cold.py)."""
    by_minute = until - since <= MINUTES_UP_TO
    records = await conn.fetch(_BY_MINUTE if by_minute else _BY_HOUR, since, until)
    counted: Counter[tuple[datetime, str]] = Counter()
    for record in records:
        counted[record["at"], record["level"]] += int(record["n"])
    for at, level, n in archived if by_minute else ():
        counted[at, level] += n
    buckets: dict[datetime, dict[str, int]] = {}
    for (at, level), n in sorted(counted.items()):
        buckets.setdefault(at, {})[level] = n
    return Timeline(
        bucket="minute" if by_minute else "hour",
        points=[TimelinePoint(at=at.isoformat(), counts=counts) for at, counts in buckets.items()],
    )


_COMPACT = """
WITH moved AS (
    DELETE FROM log_counts
    WHERE hour < date_trunc('hour', now()) - interval '1 hour'
      AND (shard <> 0 OR (hour < date_trunc('day', now(), 'UTC') - interval '1 day'
                          AND hour <> date_trunc('day', hour, 'UTC')))
    RETURNING hour, service, level, n
)
INSERT INTO log_counts AS c (hour, service, level, shard, n)
SELECT CASE WHEN hour < date_trunc('day', now(), 'UTC') - interval '1 day'
            THEN date_trunc('day', hour, 'UTC') ELSE hour END,
       service, level, 0, sum(n)
FROM moved GROUP BY 1, 2, 3
ON CONFLICT (hour, service, level, shard) DO UPDATE SET n = c.n + EXCLUDED.n
"""


async def compact(conn: asyncpg.Connection) -> int:
    """Fold shards of past hours into shard 0, and the hours of days before yesterday into one row a
    day; return how many rows were folded. The totals do not change."""
    status = await conn.execute(_COMPACT)
    return int(status.split()[-1])
