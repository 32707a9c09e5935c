"""Reading the archive: which parts a reader takes from files, and DuckDB over them.

The rule that keeps a day from being read twice or not at all (app/storage/archive.py moves it): a part is
read from its file when it is 'archived' (its partition was dropped in the transaction that said so), or
'verified' while its day's partition is no longer attached (a pass stopped between DETACH and DROP). Every
other row is read from PostgreSQL. A reader decides in the same REPEATABLE READ snapshot as its PostgreSQL
query: a `DETACH … CONCURRENTLY` that commits after that snapshot is not seen by either, and the DROP that
follows waits for the reader's lock on the partition.

Files are opened through pyarrow.fs (the same code path for a directory and s3://) as one pyarrow dataset
that DuckDB scans, pushing the filters and the columns it needs down to the Parquet reader, which skips row
groups by their statistics (service, created_at).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import asyncpg

from app.storage.archive import Store, Unavailable, available

if TYPE_CHECKING:
    import duckdb

READABLE = """
SELECT a.day, a.path FROM archive_parts a
WHERE (a.state = 'archived' OR (a.state = 'verified' AND NOT EXISTS (
        SELECT FROM pg_inherits i WHERE i.inhparent = 'logs'::regclass AND NOT i.inhdetachpending
           AND i.inhrelid = to_regclass('logs_p' || to_char(a.day, 'YYYYMMDD')))))
  AND ($1::date IS NULL OR a.day >= $1) AND ($2::date IS NULL OR a.day <= $2)
ORDER BY a.day DESC, a.part
"""


async def readable(
    conn: asyncpg.Connection, first: date | None = None, last: date | None = None
) -> list[str]:
    """Paths of the parts read from files, of days from `first` to `last` (inclusive; None: unbounded)."""
    return [r["path"] for r in await conn.fetch(READABLE, first, last)]


def day_bounds(since: datetime | None, until: datetime | None) -> tuple[date | None, date | None]:
    from app.storage.partitions import day_of

    return (day_of(since) if since else None), (day_of(until) if until else None)


class Cold:
    """One per process: the store, and a DuckDB connection per thread (DuckDB connections are not shared
    across threads; cursors of one database are)."""

    def __init__(self, url: str) -> None:
        if not available():
            raise Unavailable("archive reads need pyarrow and duckdb, not in this package (README 'Storage')")
        self.store = Store.open(url)
        import duckdb

        self._db = duckdb.connect(":memory:", config={"threads": 2, "memory_limit": "256MB"})
        self._local = threading.local()

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._local.cursor = self._db.cursor()
        return cursor

    def query(self, paths: Sequence[str], sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Run `sql` (which reads the table `archived`) over the given parts; its rows."""
        import pyarrow.dataset as ds

        dataset = ds.dataset([self.store.full(p) for p in paths], format="parquet", filesystem=self.store.fs)
        cursor = self._cursor()
        cursor.register("archived", dataset)
        try:
            return cursor.execute(sql, list(args)).fetchall()
        finally:
            cursor.unregister("archived")

    async def fetch(self, paths: Sequence[str], sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        if not paths:
            return []
        return await asyncio.to_thread(self.query, paths, sql, args)
