"""Reading the archive: which parts a reader takes from files, and DuckDB over them.

The rule that keeps a day from being read twice or not at all (app/storage/archive.py moves it): a part is
read from its file when it is 'archived' (its partition was dropped in the transaction that said so), or
'verified' while its day's partition is no longer attached (a pass stopped between DETACH and DROP). Every
other row is read from PostgreSQL. A reader decides in the same REPEATABLE READ snapshot as its PostgreSQL
query: a `DETACH … CONCURRENTLY` that commits after that snapshot is not seen by either, and the DROP that
follows waits for the reader's lock on the partition.

Files are opened through pyarrow.fs (the same code path for a directory and s3://). A page of GET /logs
reads row groups newest first (each a slice of time, app/storage/archive.py), skips those whose search
filter lacks a word every match has (app/search/), and stops as soon as no unread group can hold a newer
match; other reads hand the files to DuckDB, which skips row groups by their
statistics. Either way every filter is the same DuckDB WHERE clause (duckdb_where).
"""

from __future__ import annotations

import asyncio
import heapq
import json.encoder
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import groupby
from typing import TYPE_CHECKING, Any

import asyncpg

from app.models import LEVELS
from app.query import Condition, Query
from app.search import bloom, build, lookup, phrase
from app.storage import archive
from app.storage.archive import Store, Unavailable, available
from app.storage.partitions import day_of

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

READABLE = """
SELECT a.day, a.path, a.files FROM archive_parts a
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
        return cls([f for r in rows for f in archive.part_files(r["path"], r["files"])], end)


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
        elif c.kind == "phrase":
            clause = f"regexp_matches(message, {params([phrase.duckdb(c.value)])})"
        elif c.kind == "meta":
            clause = _meta(*c.value, params)
        elif c.kind == "before":
            moment, last_id = c.value
            clause = f"(created_at < {params([moment])}::TIMESTAMPTZ OR (created_at = {params([moment])}::TIMESTAMPTZ"
            clause += f" AND id < {params([last_id])}))"
        elif c.kind == "line":
            clause = _line(*c.value, params)
        elif c.kind == "label":
            clause = _label(*c.value, params)
        else:
            raise ValueError(f"unknown condition {c.kind}")
        where.append(f"({clause}) IS NOT TRUE" if c.negated else clause)
    return " AND ".join(where), args


def _line(op: str, needles: Sequence[str], params: Any) -> str:
    """LogQL's line filter (app/query.py's `line_sql`) for DuckDB: RE2 regexes, as Loki's own."""
    if op in ("|=", "!="):
        tests = [f"contains(coalesce(loki_line, message), {params([n])})" for n in needles]
    else:
        tests = [f"regexp_matches(coalesce(loki_line, message), {params([n])})" for n in needles]
    if op in ("|=", "|~"):
        return "(" + " OR ".join(tests) + ")"
    return "(" + " AND ".join(f"NOT {t}" for t in tests) + ")"


def _label(name: str, op: str, value: str, params: Any) -> str:
    """A LogQL label matcher (app/query.py's `label_match_sql`) for DuckDB: a missing label is ''."""
    from app.query import duckdb_label

    expr = duckdb_label(name, lambda v: params([v]))
    if op == "=":
        return f"{expr} = {params([value])}"
    if op == "!=":
        return f"{expr} <> {params([value])}"
    test = f"regexp_full_match({expr}, {params([value])})"
    return test if op == "=~" else f"NOT {test}"


# The kinds arrow_mask evaluates (the rest need DuckDB: ILIKE, JSON).
ARROW_KINDS = {"since", "until", "any", "at_least", "equals", "before"}


def arrow_mask(table: pa.Table, conditions: Sequence[Condition]) -> pa.Array:
    """The conditions of ARROW_KINDS over an Arrow table of archived rows, as a boolean mask: the same meaning
    as `postgres` and duckdb_where give them (a comparison with a missing value is not true; a negated
    condition keeps the rows where it is not true)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    created, ids = table.column("created_at"), table.column("id")
    mask = pc.invert(pc.fill_null(table.column("deleted"), False))
    for c in conditions:
        if c.kind == "since":
            clause = pc.greater_equal(created, pa.scalar(c.value, created.type))
        elif c.kind == "until":
            clause = pc.less(created, pa.scalar(c.value, created.type))
        elif c.kind == "any":
            clause = pc.is_in(table.column(c.column), value_set=pa.array(c.value, pa.string()))
        elif c.kind == "at_least":
            clause = pc.is_in(table.column("level"), value_set=pa.array(LEVELS[LEVELS.index(c.value) :]))
        elif c.kind == "equals":
            clause = pc.equal(table.column(c.column), pa.scalar(c.value, pa.string()))
        elif c.kind == "before":
            moment = pa.scalar(c.value[0], created.type)
            clause = pc.or_(
                pc.less(created, moment), pc.and_(pc.equal(created, moment), pc.less(ids, c.value[1]))
            )
        else:
            raise ValueError(f"not an Arrow condition: {c.kind}")
        clause = pc.fill_null(clause, False)
        mask = pc.and_(mask, pc.invert(clause) if c.negated else clause)
    return mask


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
# The archived columns ROW holds, in its order (what only the Loki query API reads is not in GET /logs).
ARCHIVED = [name for name in archive.COLUMNS if name != "deleted" and not name.startswith("loki_")]
# GET /logs's JSON for a log is PostgreSQL's `jsonb_build_object(...)::text` (app/query.py's DOCUMENT): keys
# in jsonb's order (shorter first, then bytewise), ": " and ", " between them. An archived row is written the
# same way here, byte for byte (tests/storage/test_cold.py checks it against PostgreSQL for generated rows):
# asking PostgreSQL to render a page of archived rows cost a fifth of the page's time.
_KEYS = sorted(ARCHIVED, key=lambda name: (len(name), name))
_SLOTS = [(f'"{name}": ', ARCHIVED.index(name)) for name in _KEYS]
_AS_IS = {ARCHIVED.index(name) for name in ("id", "duration_ms", "metadata")}  # numbers; jsonb's own text
_CREATED = ARCHIVED.index("created_at")


def render(rows: Sequence[tuple[Any, ...]]) -> list[str]:
    """Each archived row (in ROW's columns) as the JSON text GET /logs answers for it."""
    return [_document(row) for row in rows]


def _document(row: tuple[Any, ...]) -> str:
    parts = []
    for key, slot in _SLOTS:
        value = row[slot]
        if value is None:
            text = "null"
        elif slot == _CREATED:
            text = _timestamp(value)
        elif slot in _AS_IS:
            text = str(value)
        else:
            # PostgreSQL's escape_json: the two-character escapes, \u00xx for other control characters,
            # everything else (non-ASCII included) as it is; json's encoder writes exactly that.
            text = _string(value)
        parts.append(key + text)
    return "{" + ", ".join(parts) + "}"


def _timestamp(us: int) -> str:
    """to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')."""
    t = moment(us)
    return f'"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}.{t.microsecond:06d}Z"'


def moment(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_string = json.encoder.encode_basestring  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Group:
    """One row group of a part: where it is and the created_at range its statistics give (µs)."""

    path: str
    index: int
    first: int
    last: int


def _us(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def _rows(table: pa.Table) -> list[tuple[Any, ...]]:
    """Archived rows as tuples of ROW's columns and types (created_at in µs, duration_ms as text)."""
    import pyarrow as pa

    columns = []
    for name in ARCHIVED:
        values = table.column(name)
        if name == "created_at":
            values = values.cast(pa.int64())
        columns.append(values.to_pylist())
    duration = ARCHIVED.index("duration_ms")
    columns[duration] = [None if d is None else str(d) for d in columns[duration]]
    return list(zip(*columns, strict=True))


_positions_made: list[pa.Array] = []


def _positions(count: int) -> pa.Array:
    """0, 1, … count − 1 as an Arrow column (one made for the largest count so far, sliced)."""
    import pyarrow as pa

    if not _positions_made or len(_positions_made[0]) < count:
        _positions_made[:] = [pa.array(range(max(count, 1 << 16)), pa.int64())]
    return _positions_made[0].slice(0, count)


def _newest(row: tuple[Any, ...]) -> tuple[int, int]:
    return row[1], row[0]  # ROW's epoch_us(created_at), id


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
        self._lock = threading.Lock()
        self._files: OrderedDict[str, tuple[pq.FileMetaData, list[Group]]] = OrderedDict()
        self._filters: dict[str, list[bytes] | None] = {}

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
            # By name: files archived before a column was added (loki_*) give NULL for it.
            return cursor.execute(
                sql.replace("FROM archived", f"FROM read_parquet([{listed}], union_by_name = true)"),
                list(args),
            )
        # S3: DuckDB reads it only through its httpfs extension, which is not downloaded at run time; pyarrow's
        # S3 filesystem serves the files as a dataset that DuckDB scans, pushing columns and filters down.
        dataset = ds.dataset(files, format="parquet", filesystem=self.store.fs, schema=archive.schema())
        cursor.register("archived", dataset)
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
        """GET /logs's page over the archive: up to limit + 1 rows (ROW's columns), newest first."""
        if not paths:
            return []
        rows = await asyncio.to_thread(self._newest_first, paths, query)
        return rows if rows is not None else await self._scan_page(paths, query, newest_end)

    def _newest_first(self, paths: Sequence[str], query: Query) -> list[tuple[Any, ...]] | None:
        """The page from row groups read newest first (by their last created_at), in growing batches, each
        filtered by DuckDB: done once it holds limit + 1 matches and the next unread group ends before the
        oldest of them (a group ending at that very microsecond may hold a larger id, so it is read too).
        None when NEWEST_FIRST_GROUPS groups were not enough (a rare match): the scan then answers."""
        import pyarrow as pa

        assert query.limit is not None
        want = query.limit + 1
        groups = self._newest_groups(paths, *query.bounds())
        probes = [bloom.probe(entry) for entry in lookup.entries(query)]
        if probes:
            # Row groups whose search filter lacks a word every match has are never read.
            groups = (g for g in groups if self._may_hold(g, probes))
        pick = self._picker(query.conditions, want)
        found: list[tuple[Any, ...]] = []
        upcoming, read, batch = next(groups, None), 0, 1
        while upcoming is not None:
            if read >= NEWEST_FIRST_GROUPS:
                return None
            chunk = []
            while upcoming is not None and len(chunk) < batch:
                chunk, upcoming = [*chunk, upcoming], next(groups, None)
            table = pa.concat_tables([self._read(g) for g in chunk])
            found = sorted([*found, *_rows(table.take(pick(table)))], key=_newest, reverse=True)[:want]
            read, batch = read + len(chunk), batch * 2
            if len(found) == want and (upcoming is None or upcoming.last < found[-1][1]):
                break
        return found

    def _picker(self, conditions: Sequence[Condition], want: int) -> Callable[[pa.Table], pa.Array]:
        """A function giving the positions of a table's newest `want` matches. Conditions on the typed columns
        are evaluated by pyarrow (arrow_mask); text search and metadata by DuckDB (duckdb_where), whose fixed
        cost per query (~1.5 ms) was the largest part of a page read this way."""
        import pyarrow as pa
        import pyarrow.compute as pc

        order = [("created_at", "descending"), ("id", "descending")]
        if all(c.kind in ARROW_KINDS for c in conditions):

            def by_arrow(table: pa.Table) -> pa.Array:
                positions = pc.indices_nonzero(arrow_mask(table, conditions))
                newest = pc.select_k_unstable(table.select(["created_at", "id"]).take(positions), want, order)
                return positions.take(newest)

            return by_arrow
        where, args = duckdb_where(conditions)
        sql = f"SELECT n FROM archived WHERE {where} ORDER BY created_at DESC, id DESC LIMIT {want}"

        def by_duckdb(table: pa.Table) -> pa.Array:
            cursor = self._db.cursor()
            try:
                cursor.execute("SET TimeZone = 'UTC'")
                cursor.register("archived", table.append_column("n", _positions(table.num_rows)))
                return pa.array([n for (n,) in cursor.execute(sql, list(args)).fetchall()], pa.int64())
            finally:
                cursor.close()

        return by_duckdb

    def _newest_groups(
        self, files: Sequence[str], since: datetime | None, until: datetime | None
    ) -> Iterator[Group]:
        """The files' row groups that may hold rows in [since, until], by their last created_at, newest first.
        Days do not overlap, so every group of a day ends after every group of the days before it: a day's
        footers are read only when the page gets to it, and within a day heapq.merge takes each file's newest
        group first (a part's later files hold later rows, so usually only the newest file is read)."""
        low, high = (_us(since) if since else None), (_us(until) if until else None)
        parts: dict[str, list[str]] = {}
        for path in sorted(files, key=archive.file_order):
            parts.setdefault(archive.file_order(path)[0], []).append(path)
        by_day = groupby(sorted(parts.items(), reverse=True), key=lambda item: item[0].split("/", 1)[0])
        for _, day in by_day:
            groups = heapq.merge(*(self._groups(part) for _, part in day), key=lambda g: g.last, reverse=True)
            yield from (
                g for g in groups if (low is None or g.last >= low) and (high is None or g.first <= high)
            )

    def _groups(self, files: list[str]) -> Iterator[Group]:
        """A part's row groups, newest first: its files hold consecutive slices of time, so the newest file's
        groups come first, and an older file's footer is read only when the page gets to it."""
        for path in reversed(files):
            yield from self._file(path)[1]

    def _file(self, path: str) -> tuple[pq.FileMetaData, list[Group]]:
        """A file's parsed footer and its row groups' time ranges, newest first; the most recently used
        FILES_KEPT kept (files never change once readable; a footer of 200 row groups is ~4 MB parsed)."""
        import pyarrow.parquet as pq

        with self._lock:
            if path in self._files:
                self._files.move_to_end(path)
                return self._files[path]
        with self.store.fs.open_input_file(self.store.full(path)) as source:
            metadata = pq.read_metadata(source)
        created = metadata.schema.to_arrow_schema().get_field_index("created_at")
        groups = []
        for index in range(metadata.num_row_groups):
            stats = metadata.row_group(index).column(created).statistics
            if stats is not None and stats.has_min_max:  # an empty file has no group, nor statistics
                groups.append(Group(path, index, stats.min_raw, stats.max_raw))
        groups.sort(key=lambda g: g.last, reverse=True)
        filters = self._search_filters(path, metadata.num_row_groups)
        with self._lock:
            self._files[path] = (metadata, groups)
            self._filters[path] = filters
            while len(self._files) > FILES_KEPT:
                self._filters.pop(self._files.popitem(last=False)[0], None)
        return metadata, groups

    def _may_hold(self, group: Group, probes: list[tuple[int, int]]) -> bool:
        filters = self._filters.get(group.path)
        return filters is None or bloom.contains(filters[group.index], probes)

    def _read(self, group: Group) -> pa.Table:
        import pyarrow.parquet as pq

        with self.store.fs.open_input_file(self.store.full(group.path)) as source:
            return pq.ParquetFile(source, metadata=self._file(group.path)[0]).read_row_group(group.index)

    def _search_filters(self, path: str, row_groups: int) -> list[bytes] | None:
        """The file's row groups' search filters, or None (parts archived before the index, or a file
        without a whole sidecar: every row group may hold a match)."""
        try:
            with self.store.fs.open_input_stream(self.store.full(archive.search_file(path))) as source:
                blob = source.read()
        except (FileNotFoundError, OSError):
            return None
        return build.read_sidecar(blob, row_groups)

    async def _scan_page(
        self, paths: Sequence[str], query: Query, newest_end: datetime
    ) -> list[tuple[Any, ...]]:
        """The page by DuckDB scanning every part, looking back through growing windows (WINDOWS, then
        without one): a window that already holds limit + 1 matches holds the newest ones, and its lower
        bound lets DuckDB skip every row group that ends before it (by the statistics)."""
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


# How far back the scan for a page looks first (see Cold._scan_page).
WINDOWS = (timedelta(minutes=15), timedelta(hours=4))
# Row groups a page reads newest first (batches of 1, 2, 4, 8, …) before it leaves a rare match to the scan.
NEWEST_FIRST_GROUPS = 15
# Files whose footers a reader keeps parsed (~4 MB each at most).
FILES_KEPT = 16

UNAVAILABLE = (
    "these logs are archived (ARCHIVE_URL) and this deployment cannot read Parquet: pyarrow and duckdb are not"
    " in the Lambda package; read them through a server (python -m app), or narrow since/until to recent days"
)
