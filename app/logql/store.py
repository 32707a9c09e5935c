"""The Source LogQL reads (app/logql/engine.py): PostgreSQL, in one snapshot per query, with every filter a
parameter (no value is spliced into SQL text); metric buckets are GROUP BYs in the database."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import orjson

from app.logql.engine import Bucket
from app.logql.labels import METADATA_COLUMNS, ROW_PG, label_value, sanitize
from app.query import LABELS, Condition, label_sql, postgres
from app.storage.cold import EPOCH

# Every label of a row, as GROUP BY columns (metadata grouped whole, read into labels afterwards).
_ALL_LABELS = ["service", "lower(level::text)", "environment::text",
               *(LABELS[c][0] for c in METADATA_COLUMNS), "metadata::text"]  # fmt: skip


def moment(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


class PostgresSource:
    """Reads through one connection (a snapshot the route holds for the whole query)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    def _where(
        self, conditions: Sequence[Condition], since_us: int, until_us: int
    ) -> tuple[list[str], list[Any]]:
        bounded = [
            *conditions,
            Condition("since", "created_at", moment(since_us)),
            Condition("until", "created_at", moment(until_us)),
        ]
        return postgres(bounded)

    async def rows(
        self, conditions: Sequence[Condition], since_us: int, until_us: int, limit: int, forward: bool
    ) -> list[tuple[Any, ...]]:
        where, args = self._where(conditions, since_us, until_us)
        order = "ASC" if forward else "DESC"
        sql = (
            f"SELECT {ROW_PG} FROM logs WHERE {' AND '.join(where)}"
            f" ORDER BY created_at {order}, id {order} LIMIT {int(limit)}"
        )
        return [tuple(r) for r in await self.conn.fetch(sql, *args)]

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
    ) -> list[tuple[int, dict[str, str], Bucket]]:
        where, args = self._where(conditions, since_us, until_us)

        def param(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if unwrap is not None:
            where.append(f"{unwrap} IS NOT NULL")
        columns = [label_sql(name, param) for name in labels] if labels is not None else list(_ALL_LABELS)
        value = f"{unwrap}::float8" if unwrap else "1::float8"
        bucket = (
            f"ceil((extract(epoch FROM created_at) * 1000000000 - {param(origin_ns)}::numeric)"
            f" / {param(width_ns)}::numeric)::bigint"
        )
        selected = ", ".join(f"{c} AS l{i}" for i, c in enumerate(columns))
        sql = (
            f"SELECT {bucket} AS b, {selected}{',' if columns else ''} count(*) AS n,"
            f" sum(octet_length(message)) AS bytes, sum({value}) AS total, min({value}) AS low,"
            f" max({value}) AS high, sum({value} * {value}) AS squares"
            f" FROM logs WHERE {' AND '.join(where)}"
            f" GROUP BY {', '.join(['b', *(f'l{i}' for i in range(len(columns)))])} LIMIT {int(limit)}"
        )
        found = []
        for record in await self.conn.fetch(sql, *args):
            values = [record[f"l{i}"] for i in range(len(columns))]
            named = dict(zip(labels, values, strict=True)) if labels is not None else _all_labels(values)
            found.append((
                record["b"],
                named,
                Bucket(record["n"], record["bytes"] or 0, record["total"], record["low"], record["high"],
                       record["squares"]),
            ))  # fmt: skip
        return found


def _all_labels(values: list[Any]) -> dict[str, str]:
    """_ALL_LABELS' values as labels: the stream's, the metadata columns', metadata's scalars and
    detected_level (app/logql/labels.py's entry, for a group)."""
    service, level, environment, *columns, metadata_text = values
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
