"""Counts, rates and bytes from log_minutes (schema/0011_log_minutes.sql) instead of rows: a query's
buckets are summed from the minutes when that is exact, else the caller reads rows (None).

Exact when every condition is a matcher on a stream label the rollup keeps (service_name, level,
detected_level, environment), the grouping names only those, only counts or bytes are wanted, and every
bucket edge and the range's ends fall on minute boundaries: a bucket (origin + (k − 1)·width,
origin + k·width] is then the minutes whose end m lies in it, as a minute holds the rows of (m − 1 min, m].
Archived days have no minutes (app/storage/archive.py deletes them with the partition): a range that
reaches one is read from rows and files. Logs pushed through Loki have stream labels of their own and their
raw line's bytes (app/query.py label_sql), not the columns the minutes count them under: a range holding
one (a `pushed` minute) is read from rows too."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from app.logql.engine import Bucket
from app.query import LABELS, Condition, label_match_sql

MINUTE_NS = 60 * 10**9
_MINUTE_US = 60 * 10**6
# LogQL labels as log_minutes' columns (the level grouped as its enum, made lower case afterwards); matchers
# compare them as app.query.LABELS spells them for the rows that were not pushed.
_COLUMNS = {"service_name": "service", "level": "level", "detected_level": "level",
            "environment": "environment::text"}  # fmt: skip


def answers(
    conditions: Sequence[Condition],
    since_us: int,
    until_us: int,
    origin_ns: int,
    width_ns: int,
    labels: Sequence[str] | None,
    unwrap: str | None,
    measure: str | float,
) -> bool:
    """Whether the rollup answers these buckets exactly (rows since_us <= t < until_us, that is
    since_us − 1 < t <= until_us − 1 in microseconds)."""
    return (
        unwrap is None
        and measure in ("count", "bytes")
        and labels is not None
        and all(name in _COLUMNS for name in labels)
        and all(c.kind == "label" and c.value[0] in _COLUMNS for c in conditions)
        and origin_ns % MINUTE_NS == 0
        and width_ns % MINUTE_NS == 0
        and (since_us - 1) % _MINUTE_US == 0
        and (until_us - 1) % _MINUTE_US == 0
    )


async def buckets(
    conn: asyncpg.Connection,
    conditions: Sequence[Condition],
    since_us: int,
    until_us: int,
    origin_ns: int,
    width_ns: int,
    labels: Sequence[str],
    limit: int,
    moment: Any,
) -> list[tuple[int, dict[str, str], Bucket]] | None:
    """Source.buckets' answer from the minutes (`answers` must hold), or None when a log pushed through Loki
    is in the range (the rows answer); `moment` makes a timestamptz."""
    args: list[Any] = []

    def param(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    # The rows' matchers on columns of the same names and types as logs' (pushed rows are not counted here).
    where = []
    for c in conditions:
        name, op, value = c.value
        clause = label_match_sql(LABELS[name][0], op, value, param)
        where.append(f"({clause}) IS NOT TRUE" if c.negated else clause)
    span = f"minute > {param(moment(since_us - 1))} AND minute <= {param(moment(until_us - 1))}"
    where.append(span)
    columns = [_COLUMNS[name] for name in labels]
    selected = "".join(f", {c} AS l{i}" for i, c in enumerate(columns))
    groups = "".join(f", l{i}" for i in range(len(columns)))
    # The bucket's index ⌈(m − origin) / width⌉ in integer minutes, shifted by a multiple of the width so
    # that the division (truncating in SQL) only sees numbers >= 0.
    origin, width = origin_ns // MINUTE_NS, width_ns // MINUTE_NS
    shift = width * (max(0, origin - (since_us - 1) // _MINUTE_US) // width + 1)
    index = (
        f"(extract(epoch FROM minute)::bigint / 60 - {param(origin - shift)}::bigint + {param(width - 1)}::bigint)"
        f" / {param(width)}::bigint - {param(shift // width)}::bigint"
    )
    # One statement, one snapshot: whether a pushed minute is in the range, and only if none, the buckets
    # (a one-time filter: PostgreSQL does not read them otherwise). A row with a NULL bucket: none matched.
    sql = (
        f"SELECT p.pushed, g.* FROM (SELECT EXISTS (SELECT FROM log_minutes WHERE pushed AND {span}) AS pushed) p"
        f" LEFT JOIN LATERAL (SELECT {index} AS b{selected}, sum(n) AS n, sum(bytes) AS size FROM log_minutes"
        f" WHERE NOT p.pushed AND {' AND '.join(where)} GROUP BY b{groups} HAVING sum(n) <> 0"
        f" LIMIT {int(limit)}) g ON TRUE"
    )
    records = await conn.fetch(sql, *args)
    if records[0]["pushed"]:
        return None
    levels = {i for i, name in enumerate(labels) if name in ("level", "detected_level")}
    found = []
    for record in records:
        if record["b"] is None:
            continue
        values = [v.lower() if i in levels else v for i, v in enumerate(record[2 : len(columns) + 2])]
        n, size = record[len(columns) + 2 :]
        found.append(
            (record["b"], dict(zip(labels, values, strict=True)), Bucket(int(n), int(size), 0, 0, 0, 0))
        )
    return found
