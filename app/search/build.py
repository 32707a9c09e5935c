"""Making the index's blocks: the writer's, in each COPY's transaction (`Blocks`, `RECORD`), and the
housekeeping's: the backfill, which re-indexes days written around the index (`backfill`), and the
compaction of closed days' many small blocks into fewer large ones (`compact`).

A writer's group becomes one block per UTC hour its rows fall in (a late row from hours ago does not stretch
a block of the present over those hours). Rows arrive in COPY column order (app/intake/rows.py).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from operator import itemgetter
from typing import Any

import asyncpg

from app.search import bloom, tokens
from app.storage import partitions

log = logging.getLogger(__name__)

_CREATED, _MESSAGE, _METADATA = 0, 10, 18
# Rows per block when a day is rebuilt from its rows (in time order): a candidate block costs reading this
# many rows, a block costs its row in search_blocks and a lookup's test.
BACKFILL_ROWS = 5_000
# A rebuilt day's summary filter (search_days): a lookup tests it before any of the day's blocks, and a day
# that lacks a needle's entry is skipped whole. Its entries are counted once per block (an upper bound), and
# 8 bits each leave about 1 day in 60 falsely matching one entry; the first size is an upper bound on rows
# whose entries are more than 8 per row (then more false matches, never a missed one).
SUMMARY_BITS_PER_ENTRY = 8
SUMMARY_WORDS_PER_ROW = 1
# Bits of filter per distinct entry in a writer's blocks (today's, until compaction rebuilds their day). 8
# would halve their bytes (9.5 -> 4.7 B per log in 1,000-row groups) but left PostgreSQL's CPU per stored log
# the same within noise (docs/search.md, "Costs"), and one entry's false blocks would go from 1 in 240 to 1
# in 28 (tests/search/test_bloom.py).
LIVE_BITS_PER_ENTRY = bloom.BITS_PER_ENTRY

# Prepended to the writer's /stats statement (app/storage/summary.py): the group's blocks, and its own
# transaction's mark from the trigger removed (it indexed what it wrote). $5.. are the blocks' columns.
RECORD = """WITH search_block AS (
    INSERT INTO search_blocks (day, min_at, max_at, rows, bloom)
    SELECT * FROM unnest($5::date[], $6::timestamptz[], $7::timestamptz[], $8::int[], $9::bytea[])
), search_clean AS (DELETE FROM search_dirty WHERE xid = pg_current_xact_id())
"""


@dataclass
class _Block:
    min_at: datetime
    max_at: datetime
    rows: int = 0
    messages: list[str] = field(default_factory=list)
    metadata: list[str] = field(default_factory=list)


class Blocks:
    """The blocks of the rows added so far, one per UTC hour. A chunk's rows are taken whole when they fall in
    one hour (the usual case): nothing is done per row in Python but reading its time."""

    def __init__(self) -> None:
        self._by_hour: dict[int, _Block] = {}

    def add(self, rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return
        times = list(map(_AT, rows))
        low, high = min(times), max(times)
        if _hour(low) == _hour(high):
            self._extend(_hour(low), low, high, rows)
            return
        by_hour: dict[int, list[tuple[Any, ...]]] = {}
        for row, at in zip(rows, times, strict=True):
            by_hour.setdefault(_hour(at), []).append(row)
        for hour, part in by_hour.items():
            self._extend(hour, min(map(_AT, part)), max(map(_AT, part)), part)

    def _extend(self, hour: int, low: datetime, high: datetime, rows: Sequence[tuple[Any, ...]]) -> None:
        block = self._by_hour.get(hour)
        if block is None:
            block = self._by_hour[hour] = _Block(low, high)
        block.min_at, block.max_at = min(block.min_at, low), max(block.max_at, high)
        block.rows += len(rows)
        block.messages += map(_MESSAGE_OF, rows)
        block.metadata += filter(None, map(_METADATA_OF, rows))

    def params(self) -> list[list[Any]]:
        """RECORD's $5.. arrays."""
        out: list[list[Any]] = [[], [], [], [], []]
        for block in self._by_hour.values():
            out[0].append(partitions.day_of(block.min_at))
            out[1].append(block.min_at)
            out[2].append(block.max_at)
            out[3].append(block.rows)
            found = tokens.encoded_entries(
                "\n".join(block.messages) + "\n" + tokens.metadata_texts(block.metadata)
            )
            out[4].append(bloom.encoded(found, len(found), LIVE_BITS_PER_ENTRY))
        return out


_AT, _MESSAGE_OF, _METADATA_OF = itemgetter(_CREATED), itemgetter(_MESSAGE), itemgetter(_METADATA)


def _hour(at: datetime) -> int:
    return int(at.timestamp()) // 3600


def filter_of(texts: list[str]) -> bytes:
    found = tokens.encoded_entries("\n".join(texts))
    return bloom.encoded(found, len(found))


def filter_of_columns(messages: Any, metadata: Any) -> bytes:
    """An archived row group's filter, from its Arrow message and metadata (JSON text) columns."""
    texts = [m for m in messages.to_pylist() if m is not None]
    texts += [tokens.metadata_text(m) for m in metadata.to_pylist() if m is not None]
    return filter_of(texts)


_MAGIC = b"LSSEARCH1\n"


def sidecar(filters: list[bytes]) -> bytes:
    """A file's row groups' filters as one blob: a magic line, the count, then each length and filter."""
    out = [_MAGIC, struct.pack("<I", len(filters))]
    for one in filters:
        out += [struct.pack("<I", len(one)), one]
    return b"".join(out)


def read_sidecar(blob: bytes, row_groups: int) -> list[bytes] | None:
    """The filters of a file with `row_groups` row groups, or None when the blob is not whole (then its row
    groups are all read, as without an index)."""
    if not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + 4:
        return None
    (count,) = struct.unpack_from("<I", blob, len(_MAGIC))
    at, filters = len(_MAGIC) + 4, []
    for _ in range(count):
        if at + 4 > len(blob):
            return None
        (size,) = struct.unpack_from("<I", blob, at)
        filters.append(blob[at + 4 : at + 4 + size])
        at += 4 + size
    if count != row_groups or at != len(blob) or any(len(f) % 8 or not f for f in filters):
        return None
    return filters


async def backfill(conn: asyncpg.Connection, hook: Callable[[str], None] | None = None) -> list[str]:
    """If rows were written around the index: take the marks there are now, then, each day in a REPEATABLE
    READ transaction of its own (a later snapshot, which holds every row of those marks' transactions),
    rebuild the day from its rows when its row count differs from its blocks' (deleting exactly the blocks
    that snapshot sees: a block committed since covers rows committed since); then remove those marks. A
    pass stopped half way leaves the marks: readers keep scanning, and the next pass skips the days already
    rebuilt (their counts agree). Returns the partitions rebuilt."""
    marks = [r["xid"] for r in await conn.fetch("SELECT xid::text FROM search_dirty")]
    if not marks:
        return []
    rebuilt = []
    for day, table in sorted((await partitions.existing(conn)).items()):
        async with conn.transaction(isolation="repeatable_read"):
            if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table):
                continue
            rows = await conn.fetchval(f"SELECT count(*) FROM {table}")
            indexed = await conn.fetchval(
                "SELECT coalesce(sum(rows), 0) FROM search_blocks WHERE day = $1", day
            )
            if rows != indexed:
                await _rebuild(conn, day, table)
                rebuilt.append(table)
                if hook:
                    hook(table)  # tests stop the pass here, before the day's transaction commits
    await conn.execute("DELETE FROM search_dirty WHERE xid = ANY($1::text[]::xid8[])", marks)
    if rebuilt:
        log.info("search index rebuilt", extra={"partitions": rebuilt})
    return rebuilt


async def compact(conn: asyncpg.Connection, today: date | None = None) -> list[str]:
    """Closed days (before today, UTC) whose blocks are many and small (a writer's groups of a few rows; a
    lookup tests every block), or that have no summary yet (search_days: a lookup skips a day whose summary
    lacks a needle), rebuilt from their rows into blocks of BACKFILL_ROWS and a summary, each day in one
    REPEATABLE READ transaction that deletes exactly the blocks its snapshot sees: a late row committed
    meanwhile keeps its own block. Returns the partitions compacted."""
    today = today or datetime.now(UTC).date()
    days = await conn.fetch(
        "SELECT day FROM search_blocks WHERE day < $1 GROUP BY day"
        " HAVING count(*) > 2 * ceil(sum(rows)::numeric / $2) + 1 OR NOT bool_or(summarized) ORDER BY day",
        today,
        BACKFILL_ROWS,
    )
    done = []
    for record in days:
        table = partitions.name(record["day"])
        async with conn.transaction(isolation="repeatable_read"):
            if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table):
                await _rebuild(conn, record["day"], table)
                done.append(table)
    return done


async def _rebuild(conn: asyncpg.Connection, day: date, table: str) -> None:
    """The day's blocks (and its summary) rebuilt from the rows this transaction's snapshot sees."""
    await conn.execute("DELETE FROM search_blocks WHERE day = $1", day)
    await conn.execute("DELETE FROM search_days WHERE day = $1", day)
    # Sized at SUMMARY_WORDS_PER_ROW words per row, then halved to what its entries need.
    summary = bloom.Growing(SUMMARY_WORDS_PER_ROW * await conn.fetchval(f"SELECT count(*) FROM {table}"))
    block: list[tuple[datetime, str, str | None]] = []
    pending: list[tuple[date, datetime, datetime, int, bytes]] = []

    def close() -> None:
        texts = [text for _, message, metadata in block for text in _texts(message, metadata)]
        found = tokens.entries(tokens.words("\n".join(texts)))
        summary.add(found, len(found))
        pending.append((day, block[0][0], block[-1][0], len(block), bloom.build(found, len(found))))
        block.clear()

    sql = f"SELECT created_at, message, metadata::text FROM {table} ORDER BY created_at, id"
    async for record in conn.cursor(sql, prefetch=BACKFILL_ROWS):
        block.append((record[0], record[1], record[2]))
        if len(block) == BACKFILL_ROWS:
            close()
            if len(pending) >= 20:
                await _insert(conn, pending)
    if block:
        close()
    await _insert(conn, pending)
    await conn.execute(
        "INSERT INTO search_days (day, bloom) VALUES ($1, $2)", day, summary.done(SUMMARY_BITS_PER_ENTRY)
    )


def _texts(message: str, metadata: str | None) -> list[str]:
    return [message] if metadata is None else [message, tokens.metadata_text(metadata)]


async def _insert(
    conn: asyncpg.Connection, blocks: list[tuple[date, datetime, datetime, int, bytes]]
) -> None:
    if blocks:
        await conn.executemany(
            "INSERT INTO search_blocks (day, min_at, max_at, rows, bloom, summarized)"
            " VALUES ($1, $2, $3, $4, $5, true)",
            blocks,
        )
        blocks.clear()
