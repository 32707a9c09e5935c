"""The summary behind GET /stats: rows per UTC hour, service and level, in `log_counts`.

The writer adds each group's counts in the same transaction as its COPY (`add`), so counts and rows commit
together, and /stats never scans `logs` (`read`). Concurrent writers would wait on each other's row locks
of the same (hour, service, level) until their commits; each transaction therefore writes to a shard of
its own (its backend's pid modulo 16), and its keys go in sorted order so two writers never deadlock.
`compact` folds the shards, and days older than yesterday, into one row each; retention deletes the counts
of the days it drops in the same transaction as the drop (app/storage/retention.py).

The same statement adds the group's rows and message bytes per minute, service, level, environment and
whether they were pushed through Loki to
`log_minutes` (schema/0011_log_minutes.sql), which LogQL's count, rate and bytes queries read
(app/logql/rollup.py).

`recent_24h` is exact: the full hours of the last day from the summary, plus a count of the rows between
24 hours ago and the next full hour from `logs` itself (at most one hour of rows, read by the primary key).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from app.intake.rows import LOKI_COLUMNS
from app.models import ServiceCount, Stats, Timeline, TimelinePoint
from app.search import build

SHARDS = 16

_ADD = f"""
INSERT INTO log_counts AS c (hour, service, level, shard, n)
SELECT to_timestamp(h * 3600), s, l::log_level, (pg_backend_pid() % {SHARDS})::smallint, n
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[]) AS t(h, s, l, n)
ON CONFLICT (hour, service, level, shard) DO UPDATE SET n = c.n + EXCLUDED.n
"""


def _minutes_cte(first: int) -> str:
    """log_minutes' upsert as a data-modifying CTE of _ADD's statement (no round trip of its own), its eight
    arrays the parameters from $first on (the search blocks' take $5–$9 when they come too)."""
    p = [f"${first + i}" for i in range(8)]
    return f"""minutes AS (
    INSERT INTO log_minutes AS m (minute, service, level, environment, edge, pushed, shard, n, bytes)
    SELECT to_timestamp(mi * 60), s, l::log_level, e::log_environment, x, pu,
           (pg_backend_pid() % {SHARDS})::smallint, n, b
    FROM unnest({p[0]}::bigint[], {p[1]}::text[], {p[2]}::text[], {p[3]}::text[], {p[4]}::bool[],
                {p[5]}::bool[], {p[6]}::bigint[], {p[7]}::bigint[]) AS t(mi, s, l, e, x, pu, n, b)
    ON CONFLICT (minute, service, level, environment, edge, pushed, shard)
        DO UPDATE SET n = m.n + EXCLUDED.n, bytes = m.bytes + EXCLUDED.bytes
)
"""


_MINUTES_ALONE = "WITH " + _minutes_cte(5) + _ADD
_MINUTES_AFTER_BLOCKS = build.RECORD + ", " + _minutes_cte(10) + _ADD
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_MINUTE_US = 60_000_000
# A row pushed through Loki has its labels, metadata and line after COLUMNS'; every other row stops there.
_PUSHED_WIDTH = len(LOKI_COLUMNS)


@dataclass
class Tally:
    """What a transaction wrote: rows per (hour, service, level) for log_counts, and rows and message bytes
    per (minute's end, service, level, environment, edge, pushed) for log_minutes (minutes since the epoch)."""

    hours: Counter[tuple[int, str, str]] = field(default_factory=Counter)
    minutes: Counter[tuple[int, str, str, str, bool, bool]] = field(default_factory=Counter)
    bytes: Counter[tuple[int, str, str, str, bool, bool]] = field(default_factory=Counter)

    def update(self, other: Tally) -> None:
        self.hours.update(other.hours)
        self.minutes.update(other.minutes)
        self.bytes.update(other.bytes)

    def total(self) -> int:
        return self.hours.total()


def counts(rows: Sequence[tuple[Any, ...]]) -> Tally:
    """The Tally of rows in COPY column order (created_at, level, …, service, environment, …, message, and
    for a row pushed through Loki its labels, metadata and line)."""
    tally = Tally()
    hours, minutes, sizes = tally.hours, tally.minutes, tally.bytes
    for row in rows:
        at = row[0]
        us = (at - _EPOCH) // _MICROSECOND
        key = (-(-us // _MINUTE_US), row[3], row[1], row[4], us % _MINUTE_US == 0, len(row) == _PUSHED_WIDTH)
        hours[us // 3_600_000_000, row[3], row[1]] += 1
        minutes[key] += 1
        message = row[10]
        # isascii is O(1) on str: most lines skip the encode.
        sizes[key] += len(message) if message.isascii() else len(message.encode())
    return tally


async def add(conn: asyncpg.Connection, tally: Tally, blocks: build.Blocks | None = None) -> None:
    """Add `counts(rows)` of the rows this transaction wrote; with `blocks`, record their search index in
    the same statement (app/search/build.py: no round trip of its own)."""
    hours = sorted(tally.hours.items())
    minutes = sorted(tally.minutes.items())
    columns = [
        [k[0] for k, _ in hours],
        [k[1] for k, _ in hours],
        [k[2] for k, _ in hours],
        [n for _, n in hours],
    ]
    by_minute = [
        [k[0] for k, _ in minutes],
        [k[1] for k, _ in minutes],
        [k[2] for k, _ in minutes],
        [k[3] for k, _ in minutes],
        [k[4] for k, _ in minutes],
        [k[5] for k, _ in minutes],
        [n for _, n in minutes],
        [tally.bytes[k] for k, _ in minutes],
    ]
    if blocks is None:
        await conn.execute(_MINUTES_ALONE, *columns, *by_minute)
    else:
        await conn.execute(_MINUTES_AFTER_BLOCKS, *columns, *blocks.params(), *by_minute)


# The minutes of the rows in [since, until): DAY_MINUTES with since and until for start and end.
DAY_MINUTES = "(minute > $1 AND minute < $2 OR minute = $1 AND edge OR minute = $2 AND NOT edge)"

# Sets log_minutes' counts (shard 0) of the minutes that have rows in [$1, $2) (day boundaries) from the rows:
# for rows written by SQL rather than the writer (a benchmark's or a test's data set).
REBUILD_MINUTES = """
INSERT INTO log_minutes AS m (minute, service, level, environment, edge, pushed, shard, n, bytes)
SELECT date_trunc('minute', created_at - interval '1 microsecond', 'UTC') + interval '1 minute',
       service, level, environment, date_trunc('minute', created_at, 'UTC') = created_at,
       loki_labels IS NOT NULL, 0, count(*), sum(octet_length(message))
FROM logs WHERE NOT deleted AND created_at >= $1 AND created_at < $2 GROUP BY 1, 2, 3, 4, 5, 6
ON CONFLICT (minute, service, level, environment, edge, pushed, shard) DO UPDATE SET n = EXCLUDED.n, bytes = EXCLUDED.bytes
"""


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


# log_minutes' shards of minutes more than an hour old, folded into shard 0 (the minutes stay: LogQL reads them).
_COMPACT_MINUTES = """
WITH moved AS (
    DELETE FROM log_minutes WHERE minute < now() - interval '1 hour' AND shard <> 0
    RETURNING minute, service, level, environment, edge, pushed, n, bytes
)
INSERT INTO log_minutes AS m (minute, service, level, environment, edge, pushed, shard, n, bytes)
SELECT minute, service, level, environment, edge, pushed, 0, sum(n), sum(bytes) FROM moved GROUP BY 1, 2, 3, 4, 5, 6
ON CONFLICT (minute, service, level, environment, edge, pushed, shard)
    DO UPDATE SET n = m.n + EXCLUDED.n, bytes = m.bytes + EXCLUDED.bytes
"""


async def compact(conn: asyncpg.Connection) -> int:
    """Fold shards of past hours into shard 0, and the hours of days before yesterday into one row a
    day; log_minutes' shards of past minutes into shard 0; return how many rows were folded. The totals
    do not change."""
    folded = 0
    for sql in (_COMPACT, _COMPACT_MINUTES):
        status = await conn.execute(sql)
        folded += int(status.split()[-1])
    return folded
