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
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from app.models import LEVELS
from app.query import DOCUMENT, Condition, Query
from app.storage.archive import Store, Unavailable, available
from app.storage.partitions import day_of

READABLE = """
SELECT a.day, a.path FROM archive_parts a
WHERE (a.state = 'archived' OR (a.state = 'verified' AND NOT EXISTS (
        SELECT FROM pg_inherits i WHERE i.inhparent = 'logs'::regclass AND NOT i.inhdetachpending
           AND i.inhrelid = to_regclass('logs_p' || to_char(a.day, 'YYYYMMDD')))))
  AND ($1::date IS NULL OR a.day >= $1) AND ($2::date IS NULL OR a.day <= $2)
ORDER BY a.day DESC, a.part
"""


@dataclass
class Parts:
    """The parts a read takes from files, and the end of the newest day among them."""

    paths: list[str]
    newest_end: datetime | None

    @classmethod
    async def find(cls, conn: asyncpg.Connection, since: datetime | None, until: datetime | None) -> Parts:
        """The parts of days from `since` to `until` (None: unbounded) read from files."""
        first, last = (day_of(since) if since else None), (day_of(until) if until else None)
        rows = await conn.fetch(READABLE, first, last)
        newest = max((r["day"] for r in rows), default=None)
        end = (
            datetime(newest.year, newest.month, newest.day, tzinfo=UTC) + timedelta(days=1)
            if newest
            else None
        )
        return cls([r["path"] for r in rows], end)


async def readable(conn: asyncpg.Connection) -> list[str]:
    return (await Parts.find(conn, None, None)).paths


def duckdb_where(conditions: Sequence[Condition]) -> tuple[str, list[Any]]:
    """The conditions (app/query.py) as one DuckDB WHERE clause over the archived columns, and its parameters:
    the same meaning as app/query.py's `postgres` renders for PostgreSQL."""
    where, args = ["NOT deleted"], []

    def params(values: Sequence[Any]) -> str:
        args.extend(values)
        return ", ".join("?" for _ in values)

    for c in conditions:
        if c.kind == "since":
            clause = f"created_at >= {params([c.value])}::TIMESTAMPTZ"
        elif c.kind == "until":
            clause = f"created_at < {params([c.value])}::TIMESTAMPTZ"
        elif c.kind == "any":
            clause = f"{c.column} IN ({params(c.value)})"
        elif c.kind == "at_least":
            clause = f"level IN ({params(LEVELS[LEVELS.index(c.value) :])})"
        elif c.kind == "equals":
            clause = f"{c.column} = {params([c.value])}"
        elif c.kind == "contains":
            # PostgreSQL's ILIKE escapes with a backslash by default; DuckDB's is named.
            escaped = c.value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            clause = f"message ILIKE {params([f'%{escaped}%'])} ESCAPE '\\'"
        elif c.kind == "meta":
            clause = _meta(*c.value, params)
        elif c.kind == "before":
            moment, last_id = c.value
            clause = f"(created_at < {params([moment])}::TIMESTAMPTZ OR (created_at = {params([moment])}::TIMESTAMPTZ"
            clause += f" AND id < {params([last_id])}))"
        else:
            raise ValueError(f"unknown condition {c.kind}")
        where.append(f"({clause}) IS NOT TRUE" if c.negated else clause)
    return " AND ".join(where), args


def _meta(path: Sequence[str], value: Any, params: Any) -> str:
    """PostgreSQL's `metadata @> {"a": {"b": value}}` for a scalar value: the JSON at a.b is that value
    (numbers compare as numbers, 500 = 500.0). The path is a JSON pointer, so keys may hold any character."""
    pointer = "/" + "/".join(key.replace("~", "~0").replace("/", "~1") for key in path)

    def at() -> str:
        return f"json_extract(metadata, {params([pointer])})"

    if isinstance(value, bool):
        return f"(json_type({at()}) = 'BOOLEAN' AND {at()}::BOOLEAN = {params([value])})"
    if isinstance(value, (int, float)):
        numeric = "('UBIGINT', 'BIGINT', 'DOUBLE', 'HUGEINT')"
        return f"(json_type({at()}) IN {numeric} AND {at()}::DOUBLE = {params([float(value)])})"
    return f"(json_type({at()}) = 'VARCHAR' AND json_extract_string(metadata, {params([pointer])}) = {params([value])})"


# Every column a document needs, as DuckDB hands them to PostgreSQL for rendering (created_at in µs).
ROW = (
    "id, epoch_us(created_at), level, log_type, service, environment, service_version, trace_id, user_id, "
    "session_id, error_type, message, stack_trace, path, method, action_type, function_name, file_path, "
    "duration_ms::VARCHAR, metadata"
)
# The archived rows as app/query.py's DOCUMENT over the same columns, so PostgreSQL writes each log's JSON
# exactly as it does for its own rows (key order, numbers, escapes).
RENDER = f"""
SELECT {DOCUMENT} AS doc FROM (
    SELECT id, 'epoch'::timestamptz + us * interval '1 microsecond' AS created_at, level, log_type, service, environment, service_version,
           trace_id, user_id, session_id, error_type, message, stack_trace, path, method, action_type,
           function_name, file_path, duration::numeric(10, 3) AS duration_ms, meta::jsonb AS metadata, n
    FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[],
                $15::text[], $16::text[], $17::text[], $18::text[], $19::text[], $20::text[])
         WITH ORDINALITY AS t(id, us, level, log_type, service, environment, service_version, trace_id, user_id,
              session_id, error_type, message, stack_trace, path, method, action_type, function_name,
              file_path, duration, meta, n)
) rows ORDER BY n
"""


async def render(conn: asyncpg.Connection, rows: Sequence[tuple[Any, ...]]) -> list[str]:
    """Each archived row (in ROW's columns) as the JSON text GET /logs answers, in the same order."""
    if not rows:
        return []
    columns = [list(column) for column in zip(*rows, strict=True)]
    return [r["doc"] for r in await conn.fetch(RENDER, *columns)]


def moment(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Cold:
    """One per process: the store, and one in-memory DuckDB whose cursors (one per query) run the reads."""

    def __init__(self, url: str) -> None:
        if not available():
            raise Unavailable(UNAVAILABLE)
        import duckdb

        self.store = Store.open(url)
        self._db = duckdb.connect(":memory:", config={"threads": 2, "memory_limit": "256MB"})
        self._db.execute("SET TimeZone = 'UTC'")
        self._db.execute("SET parquet_metadata_cache = true")

    def _run(self, paths: Sequence[str], sql: str, args: Sequence[Any]) -> Any:
        import pyarrow.dataset as ds
        import pyarrow.fs as pafs

        files = [self.store.full(p) for p in paths]
        cursor = self._db.cursor()
        cursor.execute("SET TimeZone = 'UTC'")
        if isinstance(self.store.fs, pafs.LocalFileSystem):
            # Local files: DuckDB's own Parquet reader (row groups skipped by their statistics, top-N filters
            # pushed into the scan) is ~15x faster than scanning them as a pyarrow dataset (bench archive suite).
            listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
            return cursor.execute(sql.replace("FROM archived", f"FROM read_parquet([{listed}])"), list(args))
        # S3: DuckDB reads it only through its httpfs extension, which is not downloaded at run time; pyarrow's
        # S3 filesystem serves the files as a dataset that DuckDB scans, pushing columns and filters down.
        cursor.register("archived", ds.dataset(files, format="parquet", filesystem=self.store.fs))
        return cursor.execute(sql, list(args))

    async def fetch(self, paths: Sequence[str], sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Run `sql` (which reads the table `archived`) over the given parts; all its rows."""
        if not paths:
            return []
        return await asyncio.to_thread(lambda: self._run(paths, sql, args).fetchall())

    async def stream(
        self, paths: Sequence[str], sql: str, args: Sequence[Any], size: int
    ) -> AsyncIterator[list[Any]]:
        """The rows of `sql` in chunks of `size`, never all at once."""
        if not paths:
            return
        result = await asyncio.to_thread(self._run, paths, sql, args)
        while chunk := await asyncio.to_thread(result.fetchmany, size):
            yield chunk

    async def page(self, paths: Sequence[str], query: Query, newest_end: datetime) -> list[tuple[Any, ...]]:
        """GET /logs's page over the archive: up to limit + 1 rows (ROW's columns), newest first.

        The files are sorted by service first, so a newest-first page would read every row group's times.
        It looks back through growing windows instead (WINDOWS, then without one): a window that already
        holds limit + 1 matches holds the newest ones, and its lower bound lets DuckDB skip every row group
        that ends before it (by the statistics)."""
        assert query.limit is not None
        since, until = query.bounds()
        upper = min(until, newest_end) if until else newest_end
        for window in (*WINDOWS, None):
            conditions = list(query.conditions)
            if window is not None:
                if since is not None and upper - window <= since:
                    continue
                conditions.append(Condition("since", "created_at", upper - window))
            where, args = duckdb_where(conditions)
            sql = f"SELECT {ROW} FROM archived WHERE {where} ORDER BY created_at DESC, id DESC LIMIT {query.limit + 1}"
            rows = await self.fetch(paths, sql, args)
            if len(rows) > query.limit or window is None:
                return rows
        raise AssertionError("unreachable: the last window is unbounded")

    def export(self, paths: Sequence[str], query: Query) -> AsyncIterator[list[Any]]:
        where, args = duckdb_where(query.conditions)
        return self.stream(
            paths, f"SELECT {ROW} FROM archived WHERE {where} ORDER BY created_at DESC, id DESC", args, 500
        )

    async def trace(self, paths: Sequence[str], trace_id: str, limit: int) -> list[tuple[Any, ...]]:
        sql = f"SELECT {ROW} FROM archived WHERE trace_id = ? AND NOT deleted ORDER BY created_at, id LIMIT {limit}"
        return await self.fetch(paths, sql, [trace_id])

    async def per_minute(
        self, paths: Sequence[str], since: datetime, until: datetime
    ) -> list[tuple[datetime, str, int]]:
        """/stats/timeline's per-minute counts of the archived rows in [since, until)."""
        rows = await self.fetch(
            paths,
            "SELECT epoch_us(date_trunc('minute', created_at)), level, count(*) FROM archived"
            " WHERE created_at >= ?::TIMESTAMPTZ AND created_at < ?::TIMESTAMPTZ AND NOT deleted GROUP BY 1, 2",
            [since, until],
        )
        return [(moment(us), level, n) for us, level, n in rows]


# How far back a page over the archive looks first (see Cold.page).
WINDOWS = (timedelta(minutes=15), timedelta(hours=4))

UNAVAILABLE = (
    "these logs are archived (ARCHIVE_URL) and this deployment cannot read Parquet: pyarrow and duckdb are not"
    " in the Lambda package; read them through a server (python -m app), or narrow since/until to recent days"
)
