"""Cold storage: closed days older than ARCHIVE_AFTER_DAYS move from PostgreSQL to Parquet files.

A pass, for each daily partition of a day before today − ARCHIVE_AFTER_DAYS (one process at a time: the
maintenance loop's advisory lock, or `python -m app archive`):

1. record the part as 'writing' in `archive_parts` (schema/0004_archive.sql), committed;
2. stream the partition in time order (created_at, id) out as CSV (COPY TO STDOUT) and through pyarrow's
   streaming CSV parser into `<ARCHIVE_URL>/day=YYYY-MM-DD/part-NNNN.parquet`, then `part-NNNN.1.parquet`,
   … every FILE_ROWS rows (zstd; metadata as JSON text): every ROW_GROUP_ROWS consecutive rows become a row
   group, sorted inside by service, created_at, id
   (declared as the row group's sorting columns), with a search filter per row group beside each file
   (`search_file`), under one REPEATABLE READ snapshot that also fingerprints
   the rows (count, sum and sum of squares of the ids). Row groups are time slices so that a reader skips by
   time from their statistics and a newest-first page reads one of them: sorted by service across the whole
   day, that page read the last row group of every service (ten in the bench, 11-25x the hot page's time);
3. read the files back (row counts from their footers, every id from their pages) and compare with the
   fingerprint; 'verified', committed;
4. `DETACH PARTITION … CONCURRENTLY` (ingest is not blocked), fingerprint the detached table again (rows
   that arrived after the snapshot would show), then drop it and set 'archived' in one transaction.

Crash anywhere: 'writing' → the file is deleted and the part started over; 'verified' → the drop is
finished (or, if the partition's rows changed, the partition is attached again and the part discarded).
Readers (app/storage/cold.py) take a part from its file when it is 'archived', or 'verified' with its
partition no longer attached; otherwise from PostgreSQL: never both. A second pass finds nothing to do.

Files go through pyarrow.fs, one code path for a local directory, file:// and s3:// (credentials and
endpoint from the usual AWS variables, e.g. AWS_ENDPOINT_URL for an S3-compatible server). pyarrow and
DuckDB are not in the Lambda package (too large together: docs/storage.md); there the pass is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg

from app.search import build
from app.storage import partitions, summary

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs

log = logging.getLogger(__name__)

# Rows per row group: the bench archive suite's newest page reads one; smaller groups cost bytes per log.
ROW_GROUP_ROWS = 5_000
# Rows per file: a reader (and the pass's own check) parses a file's footer whole, ~22 kB of memory per row
# group (21 column chunks each); in one file a day of 10 M rows took ~45 MB to open, and its writer as much.
FILE_ROWS = 1_000_000
# Every column of logs, in table order; enums as text, metadata (and a Loki push's labels and structured
# metadata) as JSON text. Files written before the loki_* columns lack them: readers take them as NULL.
COLUMNS = (
    "id", "created_at", "level", "log_type", "service", "environment", "service_version", "trace_id",
    "user_id", "session_id", "error_type", "message", "stack_trace", "path", "method", "action_type",
    "function_name", "file_path", "duration_ms", "deleted", "metadata", "loki_labels", "loki_metadata",
    "loki_line",
)  # fmt: skip
# Sent as COPY (…) TO STDOUT WITH (FORMAT csv).
_COPY = (
    "SELECT id, (extract(epoch FROM created_at) * 1000000)::bigint, level, log_type, service, environment,"
    " service_version, trace_id, user_id, session_id, error_type, message, stack_trace, path, method, action_type,"
    " function_name, file_path, duration_ms, deleted, metadata, loki_labels, loki_metadata, loki_line FROM {table}"
    " ORDER BY created_at, id"
)
# Inside each row group (a slice of time).
SORTED_BY = ("service", "created_at", "id")
DICTIONARY = [
    "level", "log_type", "service", "environment", "service_version", "error_type", "path", "method", "action_type",
    "function_name", "file_path",
]  # fmt: skip
# Min/max statistics where a reader can skip by them; free text and random ids would only grow the footer
# (read before any row group: ~3.6 kB per group with them all, bench archive suite).
STATISTICS = [
    "id", "created_at", "level", "log_type", "service", "environment", "service_version", "error_type", "path",
    "method", "action_type", "function_name", "file_path", "duration_ms", "deleted",
]  # fmt: skip
# COPY's chunks waiting for the parser thread (each up to a few hundred kB).
QUEUED_CHUNKS = 8
_FINGERPRINT = (
    "SELECT count(*), coalesce(sum(id), 0)::numeric, coalesce(sum(id::numeric * id), 0) FROM {table}"
)

Hook = Callable[[str], None]


class Unavailable(RuntimeError):
    """The archive is configured but this deployment cannot reach it (no pyarrow/duckdb: Lambda)."""


def available(*, reads: bool = True) -> bool:
    """Whether this installation has the libraries: pyarrow for the pass, and DuckDB too for reads."""
    try:
        import pyarrow  # noqa: F401

        if reads:
            import duckdb  # noqa: F401
    except ImportError:
        return False
    return True


def schema() -> pa.Schema:
    import pyarrow as pa

    text = pa.string()
    types = {
        "id": pa.int64(),
        "created_at": pa.timestamp("us", tz="UTC"),
        "duration_ms": pa.decimal128(10, 3),
    }
    types["deleted"] = pa.bool_()
    return pa.schema([pa.field(name, types.get(name, text)) for name in COLUMNS])


@dataclass(frozen=True)
class Store:
    """Where the files live: a pyarrow filesystem and the root inside it."""

    fs: pafs.FileSystem
    root: str

    @classmethod
    def open(cls, url: str) -> Store:
        import pyarrow.fs as pafs

        if "://" not in url:
            local = Path(url).resolve()
            local.mkdir(parents=True, exist_ok=True)
            return cls(pafs.LocalFileSystem(), str(local))
        fs, root = pafs.FileSystem.from_uri(url)
        if isinstance(fs, pafs.LocalFileSystem):
            Path(root).mkdir(parents=True, exist_ok=True)
        return cls(fs, root.rstrip("/"))

    def full(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    def delete(self, relative: str) -> None:
        import pyarrow.fs as pafs

        if self.fs.get_file_info(self.full(relative)).type != pafs.FileType.NotFound:
            self.fs.delete_file(self.full(relative))

    def delete_part(self, path: str) -> None:
        """The part's first file and every sibling of it, however many a stopped pass left."""
        import pyarrow.fs as pafs

        directory, _, first = self.full(path).rpartition("/")
        stem = first.removesuffix(".parquet") + "."
        for info in self.fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True)):
            if info.base_name == first or info.base_name.startswith(stem):
                self.fs.delete_file(info.path)

    def days(self) -> list[date]:
        """Days with a directory in the store (whatever the table says)."""
        import pyarrow.fs as pafs

        found = []
        for info in self.fs.get_file_info(pafs.FileSelector(self.root, allow_not_found=True)):
            if info.type == pafs.FileType.Directory and info.base_name.startswith("day="):
                found.append(date.fromisoformat(info.base_name.removeprefix("day=")))
        return sorted(found)

    def delete_day(self, day: date) -> None:
        import pyarrow.fs as pafs

        directory = self.full(f"day={day}")
        if self.fs.get_file_info(directory).type != pafs.FileType.NotFound:
            self.fs.delete_dir(directory)


def file_name(day: date, part: int) -> str:
    """A part's path: its first file."""
    return f"day={day}/part-{part:04d}.parquet"


def file_order(path: str) -> tuple[str, int]:
    """A file's part (its first file's path without .parquet) and its place in it: 0 for the first."""
    stem = path.removesuffix(".parquet")
    head, _, tail = stem.rpartition(".")
    return (head, int(tail)) if head and tail.isdigit() else (stem, 0)


def part_files(path: str, files: int) -> list[str]:
    """Every file of the part whose first file is `path`, oldest rows first."""
    stem = path.removesuffix(".parquet")
    return [path, *(f"{stem}.{k}.parquet" for k in range(1, files))]


def search_file(path: str) -> str:
    """The search index of a part's file: one filter per row group (app/search/build.py's `sidecar`), deleted
    with the part (its name starts with the part's stem)."""
    return path + ".search"


def cutoff(after_days: int, today: date | None = None) -> date:
    """Days before this one are archived."""
    return (today or datetime.now(UTC).date()) - timedelta(days=after_days)


@dataclass
class Fingerprint:
    rows: int
    id_sum: Decimal
    id_square_sum: Decimal


async def _fingerprint(conn: asyncpg.Connection, table: str) -> Fingerprint:
    row = await conn.fetchrow(_FINGERPRINT.format(table=table))
    return Fingerprint(row[0], Decimal(row[1]), Decimal(row[2]))


async def run(
    conn: asyncpg.Connection,
    store: Store,
    after_days: int,
    *,
    dry_run: bool = False,
    today: date | None = None,
    hook: Hook | None = None,
    search: bool = True,
) -> list[dict[str, Any]]:
    """Archive every partition of a day before the cutoff (dry_run: only list them); what was done. With
    `search` (SEARCH_INDEX), each file gets its search filters (`search_file`); without, none: a page read
    reads every row group of such a file, as it would without the index."""
    limit = cutoff(after_days, today)
    unfinished = await conn.fetch("SELECT DISTINCT day FROM archive_parts WHERE state <> 'archived'")
    days = sorted(
        {day for day in await partitions.existing(conn) if day < limit} | {r["day"] for r in unfinished}
    )
    if dry_run:
        return [{"day": str(day), "partition": partitions.name(day)} for day in days]
    done = []
    for day in days:
        result = await archive_day(conn, store, day, hook or (lambda step: None), search)
        if result:
            done.append(result)
    return done


async def archive_day(
    conn: asyncpg.Connection, store: Store, day: date, hook: Hook, search: bool = True
) -> dict[str, Any] | None:
    table = partitions.name(day)
    parts = await conn.fetch("SELECT * FROM archive_parts WHERE day = $1 ORDER BY part", day)
    for stale in [p for p in parts if p["state"] == "writing"]:
        # A pass died while writing this part: whatever file it left is incomplete.
        await asyncio.to_thread(store.delete_part, stale["path"])
        await conn.execute("DELETE FROM archive_parts WHERE day = $1 AND part = $2", day, stale["part"])
    verified = [p for p in parts if p["state"] == "verified"]
    if verified:
        part = verified[0]
        fingerprint = Fingerprint(part["rows"], part["id_sum"], part["id_square_sum"])
        return await _drop(conn, store, day, part["part"], part["path"], fingerprint, hook)

    if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table):
        return None
    if not await conn.fetchval(f"SELECT EXISTS (SELECT FROM {table})"):
        # Made ahead and never written to: nothing to keep, and a late row would make it again.
        await _drop_empty(conn, table)
        return {"day": str(day), "partition": table, "rows": 0}
    number = max((p["part"] for p in parts if p["state"] == "archived"), default=-1) + 1
    relative = file_name(day, number)
    await conn.execute(
        "INSERT INTO archive_parts (day, part, state, path) VALUES ($1, $2, 'writing', $3)",
        day,
        number,
        relative,
    )
    hook("recorded")
    fingerprint, row_groups, files = await _export(conn, store, table, relative, search)
    hook("written")
    size = await asyncio.to_thread(_verify, store, part_files(relative, files), fingerprint)
    await conn.execute(
        "UPDATE archive_parts SET state = 'verified', rows = $3, bytes = $4, row_groups = $5, id_sum = $6,"
        " id_square_sum = $7, files = $8, updated_at = now() WHERE day = $1 AND part = $2",
        day, number, fingerprint.rows, size, row_groups, fingerprint.id_sum, fingerprint.id_square_sum, files,
    )  # fmt: skip
    hook("verified")
    return await _drop(conn, store, day, number, relative, fingerprint, hook)


async def _export(
    conn: asyncpg.Connection, store: Store, table: str, relative: str, search: bool
) -> tuple[Fingerprint, int, int]:
    """Stream the partition into the part's Parquet files; the fingerprint of exactly the rows written, the
    row groups and the files.

    PostgreSQL sorts and writes CSV (COPY … TO STDOUT, the cheapest way out of it), pyarrow's streaming CSV
    reader parses it in a thread in blocks, and every ROW_GROUP_ROWS rows become a row group: memory holds
    one row group and a few chunks in flight, whatever the day's size."""
    chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=QUEUED_CHUNKS)
    writing = asyncio.create_task(asyncio.to_thread(_write, store, relative, chunks, search))

    async def pass_on(chunk: bytes) -> None:
        try:
            chunks.put_nowait(chunk)
        except queue.Full:
            await asyncio.to_thread(chunks.put, chunk)

    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            fingerprint = await _fingerprint(conn, table)
            await conn.copy_from_query(_COPY.format(table=table), output=pass_on, format="csv")
    except BaseException:
        _abandon(chunks)
        with contextlib.suppress(Exception):
            await writing
        raise
    await asyncio.to_thread(chunks.put, None)
    return (fingerprint, *await writing)


def _abandon(chunks: queue.Queue[bytes | None]) -> None:
    """Let the writer thread finish (it then fails on a truncated CSV; the part stays 'writing')."""
    while True:
        try:
            chunks.put_nowait(None)
            return
        except queue.Full:
            with contextlib.suppress(queue.Empty):
                chunks.get_nowait()


class _Chunks:
    """A readable file over the COPY's chunks, for pyarrow's CSV reader (which reads on its own thread)."""

    def __init__(self, chunks: queue.Queue[bytes | None]) -> None:
        self.chunks, self.rest, self.done, self.closed = chunks, b"", False, False

    def read(self, size: int = -1) -> bytes:
        # Whole chunks are joined once per read (no growing concatenation: fewer, steadier allocations).
        parts, held = [self.rest], len(self.rest)
        while not self.done and (size < 0 or held < size):
            chunk = self.chunks.get()
            if chunk is None:
                self.done = True
            else:
                parts.append(chunk)
                held += len(chunk)
        data = b"".join(parts)
        if size < 0 or size >= len(data):
            self.rest = b""
            return data
        self.rest = data[size:]
        return data[:size]

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def writable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


def _write(store: Store, relative: str, chunks: queue.Queue[bytes | None], search: bool) -> tuple[int, int]:
    """The CSV stream → the part's Parquet files (and their search filters, with `search`); how many row
    groups and files it wrote."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    # jemalloc, returning freed pages at once, keeps the pass's RSS near what it holds (mimalloc, the default,
    # kept ~100 MB more at 1 M rows; glibc's malloc ~300 MB more: bench archive suite).
    with contextlib.suppress(NotImplementedError):
        pool = pa.jemalloc_memory_pool()
        pa.jemalloc_set_decay_ms(0)
        pa.set_memory_pool(pool)
    target = schema()
    # created_at arrives as µs since the epoch; everything else as its own type.
    types = {f.name: (pa.int64() if f.name == "created_at" else f.type) for f in target}
    reader = pacsv.open_csv(
        pa.PythonFile(_Chunks(chunks), mode="r"),
        read_options=pacsv.ReadOptions(column_names=list(COLUMNS), block_size=1 << 20, use_threads=False),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        # PostgreSQL's CSV: NULL is an unquoted empty field, an empty string a quoted one; booleans t/f.
        convert_options=pacsv.ConvertOptions(
            column_types=types, null_values=[""], strings_can_be_null=True, quoted_strings_can_be_null=False,
            true_values=["t"], false_values=["f"],
        ),
    )  # fmt: skip
    store.fs.create_dir(store.full(relative).rsplit("/", 1)[0], recursive=True)
    files = _Files(store, relative, target, search)
    pending: list[pa.RecordBatch] = []
    held = 0
    try:
        for batch in reader:
            pending.append(batch)
            held += batch.num_rows
            while held >= ROW_GROUP_ROWS:
                # Exactly ROW_GROUP_ROWS a group (each sorted on its own): the rest starts the next one.
                table = pa.Table.from_batches(pending)
                files.write(table.slice(0, ROW_GROUP_ROWS))
                rest = table.slice(ROW_GROUP_ROWS)
                pending, held = rest.to_batches(), rest.num_rows
        if held:
            files.write(pa.Table.from_batches(pending))
        if not files.count:  # no row after all (deleted since the day was looked at): an empty file says so
            files.next_file()
    finally:
        files.close()
    return files.row_groups, files.count


class _Files:
    """A part's files, written one row group at a time: a new file every FILE_ROWS rows."""

    def __init__(self, store: Store, first: str, target: pa.Schema, search: bool) -> None:
        self.store, self.first, self.target, self.search = store, first, target, search
        self.count, self.row_groups, self.rows_in_file = 0, 0, 0
        self._sink: Any = None
        self._writer: Any = None
        self._path = ""
        # The search filter of each row group of the file being written (app/search/build.py).
        self._filters: list[bytes] = []

    def write(self, table: pa.Table) -> None:
        """One row group: created_at typed, rows sorted by service, created_at, id; and its search filter."""
        if self._writer is None or self.rows_in_file >= FILE_ROWS:
            self.next_file()
        created = table.column("created_at").cast(self.target.field("created_at").type)
        table = table.set_column(1, self.target.field("created_at"), created)
        self._writer.write_table(
            table.sort_by([(name, "ascending") for name in SORTED_BY]), row_group_size=ROW_GROUP_ROWS
        )
        if self.search:
            self._filters.append(build.filter_of_columns(table.column("message"), table.column("metadata")))
        self.row_groups += 1
        self.rows_in_file += table.num_rows

    def next_file(self) -> None:
        import pyarrow.parquet as pq

        self.close()
        self.count += 1
        self._path = part_files(self.first, self.count)[-1]
        self._sink = self.store.fs.open_output_stream(self.store.full(self._path))
        # Dictionaries for the columns with few distinct values only: for ids, times and free text they would
        # cost memory (their encoders' tables) and gain little over zstd.
        self._writer = pq.ParquetWriter(
            self._sink,
            self.target,
            compression="zstd",
            write_statistics=STATISTICS,
            use_dictionary=DICTIONARY,
            sorting_columns=pq.SortingColumn.from_ordering(
                self.target, [(name, "ascending") for name in SORTED_BY]
            ),
        )
        self.rows_in_file = 0

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._sink.close()
            self._writer = self._sink = None
            # Beside the file, before the part can be verified (a part still 'writing' is deleted whole).
            if self.search:
                with self.store.fs.open_output_stream(self.store.full(search_file(self._path))) as sink:
                    sink.write(build.sidecar(self._filters))
            self._filters = []


def _verify(store: Store, files: list[str], expected: Fingerprint) -> int:
    """Read the part's files back: their footers' row counts and every id must match; their size in bytes."""
    import pyarrow.parquet as pq

    size, footer_rows, rows, id_sum, square_sum = 0, 0, 0, 0, 0
    for relative in files:
        with store.fs.open_input_file(store.full(relative)) as source:
            size += source.size()
            parquet = pq.ParquetFile(source)
            for batch in parquet.iter_batches(columns=["id"], batch_size=ROW_GROUP_ROWS):
                ids = batch.column(0).to_pylist()
                rows += len(ids)
                id_sum += sum(ids)
                square_sum += sum(i * i for i in ids)
            footer_rows += parquet.metadata.num_rows
    got = (footer_rows, rows, Decimal(id_sum), Decimal(square_sum))
    want = (expected.rows, expected.rows, expected.id_sum, expected.id_square_sum)
    if got != want:
        raise RuntimeError(f"archive files {files[0]} … do not match their partition: {got} != {want}")
    return size


async def _drop(
    conn: asyncpg.Connection,
    store: Store,
    day: date,
    part: int,
    relative: str,
    fingerprint: Fingerprint,
    hook: Hook,
) -> dict[str, Any]:
    table = partitions.name(day)
    await partitions.detach(conn, table)
    hook("detached")
    # Detached, no row can arrive any more: the table must still hold exactly the rows of the file.
    exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table)
    if exists and await _fingerprint(conn, table) != fingerprint:
        # Rows arrived for this day after the export's snapshot: back into logs, and the part goes.
        async with conn.transaction():
            await _attach(conn, day)
            await conn.execute("DELETE FROM archive_parts WHERE day = $1 AND part = $2", day, part)
        await asyncio.to_thread(store.delete_part, relative)
        log.warning("archive: %s changed while it was archived; it is done again next pass", table)
        return {"day": str(day), "partition": table, "redo": True}
    async with conn.transaction():
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        # The day's search blocks covered exactly the rows that leave (app/search/build.py).
        await conn.execute("DELETE FROM search_blocks WHERE day = $1", day)
        await conn.execute("DELETE FROM search_days WHERE day = $1", day)
        # LogQL's rollup (app/logql/rollup.py) answers no archived day: its minutes leave with its rows.
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        await conn.execute(
            f"DELETE FROM log_minutes WHERE {summary.DAY_MINUTES}", start, start + timedelta(days=1)
        )
        await conn.execute(
            "UPDATE archive_parts SET state = 'archived', updated_at = now() WHERE day = $1 AND part = $2",
            day,
            part,
        )
        hook("dropping")
    log.info("archive: partition moved to files", extra={"partition": table, "rows": fingerprint.rows})
    return {"day": str(day), "partition": table, "part": relative, "rows": fingerprint.rows}


async def _attach(conn: asyncpg.Connection, day: date) -> None:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    await conn.execute(
        f"ALTER TABLE logs ATTACH PARTITION {partitions.name(day)} FOR VALUES FROM ('{start.isoformat()}')"
        f" TO ('{(start + timedelta(days=1)).isoformat()}')"
    )


async def _drop_empty(conn: asyncpg.Connection, table: str) -> None:
    await partitions.detach(conn, table)
    await conn.execute(f"DROP TABLE IF EXISTS {table}")


async def expire(
    conn: asyncpg.Connection, store: Store, retention_days: int, today: date | None = None
) -> list[str]:
    """RETENTION_DAYS for archived days: their records, then their files (a crash between leaves files
    that the next pass still finds by listing the store); their /stats counts with the records."""
    if retention_days <= 0:
        return []
    limit = (today or datetime.now(UTC).date()) - timedelta(days=retention_days)
    recorded = [
        r["day"] for r in await conn.fetch("SELECT DISTINCT day FROM archive_parts WHERE day < $1", limit)
    ]
    listed = [day for day in await asyncio.to_thread(store.days) if day < limit]
    days = sorted(set(recorded) | set(listed))
    for day in days:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        async with conn.transaction():
            await conn.execute("DELETE FROM archive_parts WHERE day = $1", day)
            if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", partitions.name(day)):
                await conn.execute(
                    "DELETE FROM log_counts WHERE hour >= $1 AND hour < $2", start, start + timedelta(days=1)
                )
        await asyncio.to_thread(store.delete_day, day)
    return [str(day) for day in days]


SKIPPED = (
    "ARCHIVE_URL is set but pyarrow and duckdb are not installed here (the Lambda package): run the pass"
)
SKIPPED += " where they are (`python -m app archive` on a server or cron)"


async def housekeeping(conn: asyncpg.Connection, settings: Any, *, dry_run: bool = False) -> dict[str, Any]:
    """The archive's share of a maintenance pass (the caller holds the housekeeping lock)."""
    if not settings.archive_url:
        return {}
    if not available(reads=False):
        log.warning("archive skipped: %s", SKIPPED)
        return {"archive_skipped": SKIPPED}
    store = await asyncio.to_thread(Store.open, settings.archive_url)
    expired = [] if dry_run else await expire(conn, store, settings.retention_days)
    moved = []
    if settings.archive_after_days is not None:
        moved = await run(
            conn, store, settings.archive_after_days, dry_run=dry_run, search=settings.search_index
        )
    return {"archived": moved, "archive_expired": expired}
