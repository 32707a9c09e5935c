"""Counts, rates and bytes from log_minutes (schema/0011_log_minutes.sql) instead of rows: a query's
buckets are summed from the minutes when that is exact, else the caller reads rows (None).

Exact when every condition is a matcher on a stream label the rollup keeps (service_name, level,
detected_level, environment), the grouping names only those, only counts or bytes are wanted, and every
bucket edge and the range's ends fall on minute boundaries: a bucket (origin + (k − 1)·width,
origin + k·width] is then the minutes whose end m lies in it, as a minute holds the rows of (m − 1 min, m].
Archived days have no minutes (app/storage/archive.py deletes them with the partition): a range that
reaches one is read from rows and files."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from app.logql.engine import Bucket
from app.query import Condition, postgres

MINUTE_NS = 60 * 10**9
_MINUTE_US = 60 * 10**6
# LogQL labels as log_minutes' columns (the level grouped as its enum, made lower case afterwards).
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
) -> list[tuple[int, dict[str, str], Bucket]]:
    """Source.buckets' answer from the minutes (`answers` must hold); `moment` makes a timestamptz."""
    # The same matchers as on logs: log_minutes has the columns under the same names and types.
    where, args = postgres(list(conditions))
    where = [clause for clause in where if clause != "NOT deleted"]

    def param(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    where += [f"minute > {param(moment(since_us - 1))}", f"minute <= {param(moment(until_us - 1))}"]
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
    sql = (
        f"SELECT {index} AS b{selected}, sum(n) AS n, sum(bytes) AS size FROM log_minutes"
        f" WHERE {' AND '.join(where)} GROUP BY b{groups} HAVING sum(n) <> 0 LIMIT {int(limit)}"
    )
    levels = {i for i, name in enumerate(labels) if name in ("level", "detected_level")}
    found = []
    for record in await conn.fetch(sql, *args):
        values = [v.lower() if i in levels else v for i, v in enumerate(record[1 : len(columns) + 1])]
        n, size = record[len(columns) + 1 :]
        found.append(
            (record[0], dict(zip(labels, values, strict=True)), Bucket(int(n), int(size), 0, 0, 0, 0))
        )
    return found
