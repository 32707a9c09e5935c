"""A query's candidates: the time ranges of the blocks whose filters hold every entry its needles guarantee
(app/search/tokens.py), as one more condition on created_at. The rows in them are checked by the very same
conditions as without the index, so an answer is the same, byte for byte; the index only decides how many
rows PostgreSQL reads.

A day rebuilt by the housekeeping has a summary filter (search_days) that is tested first: when it lacks an
entry, none of the day's summarized blocks is tested (blocks added later, late rows, always are). So a needle
costs a test per day plus a test per block of the days that may hold it.

No candidates are proposed (None: the scan answers) when a query has nothing to look up, when the index does
not cover every row (a mark in search_dirty), or when the candidates are so many that reading them in time
order is cheaper (MAX_ROWS, MAX_RANGES).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import asyncpg

from app.query import Condition, Query
from app.search import bloom, tokens
from app.storage.partitions import day_of

# Above this many candidate rows the newest-first scan (which stops at a page) is left to answer.
MAX_ROWS = 200_000
MAX_RANGES = 500
# Blocks fetched per round trip of the lookup's cursor: small enough that a common word stops early.
PREFETCH = 50

_WORD = (
    "('x' || encode(substring(bloom FROM ((${h}::bigint % (length(bloom) / 8)) * 8 + 1)::int FOR 8), 'hex'))"
)
_TEST = "(" + _WORD + "::bit(64)::bigint & ${m}::bigint) = ${m}::bigint"


def entries(query: Query) -> list[str]:
    """What every matching row's block holds: the guaranteed words of `q=`, of `meta.` string values and of
    LogQL's `|=`."""
    found: list[str] = []
    for c in query.conditions:
        if c.negated:
            continue
        if c.kind == "contains":
            found += tokens.needle_entries(c.value)
        elif c.kind == "phrase":
            found += c.value  # whole words of the row (app/search/phrase.py)
        elif c.kind == "meta":
            found += tokens.value_entries(c.value[1])
        elif c.kind == "line" and c.value[0] == "|=" and len(c.value[1]) == 1:
            # LogQL's `|= "x"` is a case-sensitive substring: a row holding it also holds it case-folded, so
            # the entries of `q=x` hold for it too. Several needles (`|= "a" or "b"`) are a union: scanned.
            found += tokens.needle_entries(c.value[1][0])
    return list(dict.fromkeys(found))


def _tests(probes: int) -> str:
    return " AND ".join(_TEST.format(h=3 + 2 * i, m=4 + 2 * i) for i in range(probes))


_DAYS = " WHERE ($1::date IS NULL OR day >= $1) AND ($2::date IS NULL OR day <= $2)"


def days_sql(probes: int) -> str:
    """The days whose summary lacks an entry: none of their summarized blocks can hold a match."""
    return "SELECT day FROM search_days" + _DAYS + " AND NOT (" + _tests(probes) + ")"


def sql(probes: int) -> str:
    """The blocks that may hold a match; the summarized blocks of the days skipped ($last) are not tested
    (CASE: their filters are never read)."""
    skipped = 3 + 2 * probes
    return (
        "SELECT min_at, max_at, rows FROM search_blocks" + _DAYS + f" AND CASE WHEN summarized AND"
        f" day = ANY(${skipped}::date[]) THEN false ELSE {_tests(probes)} END"
    )


async def narrow(conn: asyncpg.Connection, query: Query) -> Query | None:
    """`query` with the candidates' ranges as one more condition, or None when the scan should answer.
    Runs in the caller's snapshot (a transaction), which also reads the rows: blocks and rows are committed
    together. The blocks are read through a cursor and the lookup stops as soon as the candidates pass
    MAX_ROWS: a common word costs a few blocks' tests, not every block's."""
    wanted = entries(query)
    if not wanted:
        return None
    if await conn.fetchval("SELECT EXISTS (SELECT FROM search_dirty)"):
        return None
    since, until = query.bounds()
    args: list[object] = [day_of(since) if since else None, day_of(until) if until else None]
    for entry in wanted:
        h, mask = bloom.probe(entry)
        args += [h, bloom.signed(mask)]
    skipped = [r["day"] for r in await conn.fetch(days_sql(len(wanted)), *args)]
    found: list[tuple[datetime, datetime]] = []
    rows = 0
    async for b in conn.cursor(sql(len(wanted)), *args, skipped, prefetch=PREFETCH):
        if (since is None or b["max_at"] >= since) and (until is None or b["min_at"] <= until):
            found.append((b["min_at"], b["max_at"]))
            rows += b["rows"]
            if rows > MAX_ROWS:
                return None
    found.sort()
    ranges: list[tuple[datetime, datetime]] = []
    for low, high in found:
        if ranges and low <= ranges[-1][1]:
            ranges[-1] = (ranges[-1][0], max(ranges[-1][1], high))
        else:
            ranges.append((low, high))
    if len(ranges) > MAX_RANGES:
        return None
    return replace(query, conditions=[*query.conditions, Condition("within", "created_at", ranges)])
