"""The Source LogQL reads (app/logql/engine.py): PostgreSQL, in one snapshot per query, with every filter a
parameter (no value is spliced into SQL text); metric buckets are GROUP BYs in the database. Archived days
(app/storage/cold.py) are read from their Parquet files by DuckDB with the same conditions and the same
GROUP BY, decided in the same snapshot, so a day answers the same before and after it is archived."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import orjson

from app.errors import ArchiveUnreadable
from app.logql import rollup
from app.logql.engine import Bucket
from app.logql.labels import METADATA_COLUMNS, ROW_DUCKDB, ROW_PG, label_value, pushed_labels, sanitize
from app.query import LABELS, Condition, Query, duckdb_label, label_sql, postgres
from app.search import lookup
from app.storage import cold
from app.storage.cold import EPOCH

# Every label of a row, as GROUP BY columns (metadata grouped whole, read into labels afterwards).
_LEVEL = "level"
_LEVELS = frozenset({"level", "detected_level"})
_ALL_LABELS = ["service", _LEVEL, "environment::text",
               *(LABELS[c][0] for c in METADATA_COLUMNS), "metadata::text", "loki_labels::text",
               "loki_metadata::text"]  # fmt: skip
_ALL_LABELS_DUCKDB = ["service", "lower(level)", "environment", *(LABELS[c][1] for c in METADATA_COLUMNS),
                      "metadata", "loki_labels", "loki_metadata"]  # fmt: skip
# A log pushed through Loki's push API: its level label is the one it was pushed with (app/logql/labels.py).
_PUSHED_LEVEL = (
    "CASE WHEN loki_labels IS NOT NULL THEN coalesce(loki_labels->>{0}, loki_metadata->>{0}, {1}) END"
)


def moment(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def _us(at: datetime) -> int:
    return (at - EPOCH) // timedelta(microseconds=1)


# Whether a log pushed through Loki may lie in [$1, $2): log_minutes counts pushed logs by the end of their
# minute, written in their COPY's transaction (app/storage/summary.py).
_PUSHED = (
    "SELECT EXISTS (SELECT FROM log_minutes WHERE pushed"
    " AND minute >= $1::timestamptz AND minute < $2::timestamptz + interval '1 minute')"
)


def bounded(conditions: Sequence[Condition], since_us: int, until_us: int) -> list[Condition]:
    """The conditions with since_us <= created_at < until_us added."""
    return [
        *conditions,
        Condition("since", "created_at", moment(since_us)),
        Condition("until", "created_at", moment(until_us)),
    ]


class PostgresSource:
    """Reads through one connection (a snapshot the route holds for the whole query), and the archive
    through `reader` when ARCHIVE_URL is set (`archived`)."""

    def __init__(
        self,
        conn: asyncpg.Connection,
        archived: bool = False,
        reader: cold.Cold | None = None,
        search: bool = False,
    ) -> None:
        self.conn = conn
        self.archived = archived
        self.reader = reader
        self.search = search

    async def _narrowed(
        self, conditions: Sequence[Condition], since_us: int, until_us: int
    ) -> list[Condition]:
        """The conditions and, when the search index (app/search/) has candidates for a `|=` needle, the time
        ranges they lie in: the same rows match, PostgreSQL reads fewer. In the caller's snapshot."""
        if not self.search or not lookup.entries(Query(list(conditions))):
            return list(conditions)
        # `|=` reads a Loki-pushed log's own line (loki_line), which the index does not hold (tokenizing every
        # pushed line cost Loki's ingest more than half its speed): with such a log in the range, the scan.
        if await self.conn.fetchval(_PUSHED, moment(since_us), moment(until_us)):
            return list(conditions)
        narrowed = await lookup.narrow(self.conn, Query(bounded(conditions, since_us, until_us), limit=None))
        return list(conditions) if narrowed is None else [*conditions, narrowed.conditions[-1]]

    async def _parts(self, since_us: int, until_us: int) -> tuple[cold.Cold, list[str]] | None:
        """The archived files of the days in [since, until), and the reader; None when there are none."""
        if not self.archived:
            return None
        parts = await cold.Parts.find(self.conn, moment(since_us), moment(until_us))
        if not parts.paths:
            return None
        if self.reader is None:
            raise ArchiveUnreadable(cold.UNAVAILABLE)
        return self.reader, parts.paths

    @staticmethod
    def _duckdb_where(conditions: Sequence[Condition], since_us: int, until_us: int) -> tuple[str, list[Any]]:
        return cold.duckdb_where(bounded(conditions, since_us, until_us))

    def _where(
        self, conditions: Sequence[Condition], since_us: int, until_us: int
    ) -> tuple[list[str], list[Any]]:
        return postgres(bounded(conditions, since_us, until_us))

    async def rows(
        self, conditions: Sequence[Condition], since_us: int, until_us: int, limit: int, forward: bool
    ) -> list[tuple[Any, ...]]:
        where, args = self._where(await self._narrowed(conditions, since_us, until_us), since_us, until_us)
        order = "ASC" if forward else "DESC"
        sql = (
            f"SELECT {ROW_PG} FROM logs WHERE {' AND '.join(where)}"
            f" ORDER BY created_at {order}, id {order} LIMIT {int(limit)}"
        )
        found = [tuple(r) for r in await self.conn.fetch(sql, *args)]
        if (archive := await self._parts(since_us, until_us)) is not None:
            reader, paths = archive
            where_cold, args_cold = self._duckdb_where(conditions, since_us, until_us)
            sql = (
                f"SELECT {ROW_DUCKDB} FROM archived WHERE {where_cold}"
                f" ORDER BY created_at {order}, id {order} LIMIT {int(limit)}"
            )
            found += await reader.fetch(paths, sql, args_cold)
            found.sort(key=lambda row: (row[0], row[1]), reverse=not forward)
            del found[limit:]
        return found

    async def buckets(
        self,
        conditions: Sequence[Condition],
        since_us: int,
        until_us: int,
        origin_ns: int,
        width_ns: int,
        labels: Sequence[str] | None,
        unwrap: str | None,
        limit: int,
        measure: str | float = "values",
    ) -> list[tuple[int, dict[str, str], Bucket]] | None:
        # Counts over stream labels on minute boundaries, on days not archived, with no pushed log in the
        # range: from log_minutes.
        if rollup.answers(conditions, since_us, until_us, origin_ns, width_ns, labels, unwrap, measure) and (
            await self._parts(since_us, until_us) is None
        ):
            assert labels is not None
            found = await rollup.buckets(
                self.conn, conditions, since_us, until_us, origin_ns, width_ns, labels, limit, moment
            )
            if found is not None:
                return found
        where, args = self._where(await self._narrowed(conditions, since_us, until_us), since_us, until_us)

        def param(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if unwrap is not None:
            where.append(f"{unwrap} IS NOT NULL")
        # The level grouped as the enum it is stored as (a cast per row costs), made lower case afterwards;
        # beside it, a pushed log's own level label (NULL for every other log: no cast).
        columns = (
            [_LEVEL if name in _LEVELS else label_sql(name, param) for name in labels]
            if labels is not None
            else list(_ALL_LABELS)
        )
        levels = [i for i, name in enumerate(labels or ()) if name in _LEVELS]
        for i in levels:
            name = labels[i] if labels is not None else ""
            fallback = "lower(level::text)" if name == "detected_level" else "''"
            columns.append(_PUSHED_LEVEL.format(param(name), fallback))
        # Sums in exact decimals (not floats), so that the order rows are added in changes nothing.
        value = unwrap if unwrap else "1"
        whole_us = origin_ns % 1000 == 0 and width_ns % 1000 == 0
        if whole_us:
            # date_bin's integer arithmetic (a bin holds (start, start + width]: hence the microsecond back),
            # several times cheaper per row than numeric division; the bin's index is found below.
            bucket = (
                f"date_bin({param(timedelta(microseconds=width_ns // 1000))}::interval,"
                f" created_at - interval '1 microsecond', {param(moment(origin_ns // 1000))}::timestamptz)"
            )
        else:
            bucket = (
                f"ceil((extract(epoch FROM created_at) * 1000000000 - {param(origin_ns)}::numeric)"
                f" / {param(width_ns)}::numeric)::bigint"
            )
        selected = ", ".join(f"{c} AS l{i}" for i, c in enumerate(columns))
        # Only what the aggregation needs: reading every message for its length, or the values, costs.
        size = "sum(octet_length(coalesce(loki_line, message)))" if measure == "bytes" else "0"
        if measure == "values":
            values = f"sum({value}), min({value}), max({value}), sum({value} * {value})"
        elif isinstance(measure, float):
            # percentile_cont interpolates between the closest ranks, as Prometheus's quantile does.
            values = f"percentile_cont({param(measure)}::float8) WITHIN GROUP (ORDER BY {value}), 0, 0, 0"
        else:
            values = "0, 0, 0, 0"
        sql = (
            f"SELECT {bucket} AS b, {selected}{',' if columns else ''} count(*) AS n, {size}, {values}"
            f" FROM logs WHERE {' AND '.join(where)}"
            f" GROUP BY {', '.join(['b', *(f'l{i}' for i in range(len(columns)))])} LIMIT {int(limit)}"
        )
        archive = await self._parts(since_us, until_us)
        if isinstance(measure, float) and archive is not None:
            return None  # a bucket across an archived day's edge has no one quantile: the caller reads rows
        records = [tuple(r) for r in await self.conn.fetch(sql, *args)]
        if whole_us:
            origin_us, width_us = origin_ns // 1000, width_ns // 1000
            records = [((_us(r[0]) - origin_us) // width_us + 1, *r[1:]) for r in records]
        if levels:
            records = [_levelled(r, levels, len(columns) - len(levels)) for r in records]
        if archive is not None:
            records += await self._cold_buckets(
                *archive, conditions, since_us, until_us, origin_ns, width_ns, labels, unwrap, limit
            )
        found = []
        width = len(columns) - len(levels)
        for record in records:
            values = list(record[1 : width + 1])
            named = dict(zip(labels, values, strict=True)) if labels is not None else _all_labels(values)
            n, size, total, low, high, squares = record[width + 1 :]
            found.append((record[0], named, Bucket(n, int(size or 0), total, low, high, squares)))
        return found

    @staticmethod
    async def _cold_buckets(
        reader: cold.Cold,
        paths: list[str],
        conditions: Sequence[Condition],
        since_us: int,
        until_us: int,
        origin_ns: int,
        width_ns: int,
        labels: Sequence[str] | None,
        unwrap: str | None,
        limit: int,
    ) -> list[tuple[Any, ...]]:
        """`buckets`' GROUP BY for DuckDB over the archived files, in the same columns."""
        where, args = PostgresSource._duckdb_where(conditions, since_us, until_us)
        before = list(args)
        args.clear()

        def param(value: Any) -> str:
            args.append(value)
            return "?"

        # Exact in integers until the division: (ns − origin) is far below 2^53 for any range a query spans.
        bucket = (
            f"CAST(ceil((epoch_us(created_at) * 1000 - {param(origin_ns)}) / {param(width_ns)}) AS BIGINT)"
        )
        if labels is None:
            columns = list(_ALL_LABELS_DUCKDB)
        else:
            columns = []
            columns = [duckdb_label(name, param) for name in labels]
        value = unwrap if unwrap else "1"
        if unwrap:
            where += f" AND {unwrap} IS NOT NULL"
        selected = "".join(f", {c} AS l{i}" for i, c in enumerate(columns))
        groups = "".join(f", l{i}" for i in range(len(columns)))
        sql = (
            f"SELECT {bucket} AS b{selected}, count(*), sum(strlen(coalesce(loki_line, message))), sum({value}), min({value}),"
            f" max({value}), sum({value} * {value}) FROM archived WHERE {where} GROUP BY b{groups} LIMIT {int(limit)}"
        )
        # The SELECT's parameters come before the WHERE's.
        return await reader.fetch(paths, sql, [*args, *before])


def _levelled(record: tuple[Any, ...], levels: list[int], width: int) -> tuple[Any, ...]:
    """A group's record with its level labels in lower case, or a pushed log's own (the columns after
    `width` label columns), and those columns taken out."""
    values = list(record[: width + 1])
    for extra, i in enumerate(levels):
        pushed = record[width + 1 + extra]
        values[i + 1] = values[i + 1].lower() if pushed is None else pushed
    return (*values, *record[width + 1 + len(levels) :])


def _all_labels(values: list[Any]) -> dict[str, str]:
    """_ALL_LABELS' values as labels: the stream's, the metadata columns', metadata's scalars and
    detected_level (app/logql/labels.py's entry, for a group); a pushed log's as it was pushed."""
    service, level, environment, *columns, metadata_text, pushed, structured = values
    level = level.lower()
    if pushed is not None:
        return pushed_labels(pushed, structured, level)
    labels: dict[str, str] = {}
    if metadata_text:
        document = orjson.loads(metadata_text)
        if isinstance(document, dict):
            for key, value in document.items():
                if key and (text := label_value(value)) is not None:
                    labels[sanitize(key)] = text
    labels.update((n, v) for n, v in zip(METADATA_COLUMNS, columns, strict=True) if v is not None)
    labels.update(service_name=service, level=level, environment=environment, detected_level=level)
    return labels
