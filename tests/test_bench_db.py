from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest

from app.intake.rows import parse
from bench import db as bench_db
from bench.data import LogFactory, body
from tests.support import DB


def rows(n: int) -> list[tuple[Any, ...]]:
    return parse(body(LogFactory(9).batch(n)), n)


@pytest.mark.parametrize("name", list(bench_db.METHODS))
def test_every_method_writes_exactly_its_rows(db: DB, database_url: str, name: str) -> None:
    sample = rows(25)

    async def check() -> int:
        conn = await asyncpg.connect(database_url)
        try:
            return await bench_db.METHODS[name](conn, sample)
        finally:
            await conn.close()

    assert asyncio.run(check()) == 25
    stored = db.fetch("SELECT message, trace_id, metadata FROM logs ORDER BY id")
    assert [(r["message"], r["trace_id"]) for r in stored] == [(row[10], row[6]) for row in sample]


def test_an_arm_reports_percentiles_and_checks_the_count(db: DB, database_url: str) -> None:
    async def arm() -> dict[str, Any]:
        conn = await asyncpg.connect(database_url)
        try:
            return await bench_db.run_arm(
                conn, "copy", bench_db.copy, rows(200), 50, warmup=0.05, duration=0.1
            )
        finally:
            await conn.close()

    result = asyncio.run(arm())
    assert result["method"] == "copy" and result["batch"] == 50
    assert result["rows"] == 50 * result["batches"] and result["rows_per_s"] > 0
    assert result["p50_ms"] <= result["p90_ms"] <= result["p99_ms"]


def test_the_row_count_check_fails_loudly_on_a_mismatch(db: DB, database_url: str) -> None:
    async def claims_one_more(conn: asyncpg.Connection, batch: Sequence[tuple[Any, ...]]) -> int:
        return await bench_db.copy(conn, batch) + 1

    async def arm() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await bench_db.run_arm(conn, "liar", claims_one_more, rows(20), 10, warmup=0, duration=0.01)
        finally:
            await conn.close()

    with pytest.raises(bench_db.RowCountMismatch, match="but .* were written"):
        asyncio.run(arm())


def test_percentile_and_cycler() -> None:
    assert bench_db.percentile([5, 1, 3, 2, 4], 50) == 3
    assert bench_db.percentile([1.0] * 99 + [100.0], 99) == 1.0
    assert bench_db.percentile(list(range(1, 101)), 99) == 99
    next_batch = bench_db.cycler(list(range(10)), 4)
    assert [next_batch(), next_batch(), next_batch()] == [[0, 1, 2, 3], [4, 5, 6, 7], [0, 1, 2, 3]]


@pytest.mark.parametrize(
    "schema", ["no trace_id btree", "unpartitioned", "metadata json", "message trigram GIN"]
)
def test_a_schema_arm_measures_then_puts_the_schema_back(
    db: DB, database_url: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench_db, "QUERY_ROWS", 3000)
    before = (
        db.fetch("SELECT indexname FROM pg_indexes WHERE tablename = 'logs' ORDER BY 1"),
        db.fetch(
            "SELECT data_type FROM information_schema.columns WHERE table_name = 'logs' AND column_name = 'metadata'"
        ),
        db.fetch("SELECT relkind::text AS kind FROM pg_class WHERE relname = 'logs'"),
    )

    result = asyncio.run(bench_db.schema_arm(database_url, schema, rows(2000), warmup=0.05, duration=0.1))

    assert result["schema"] == schema and result["rows_per_s"] > 0
    assert result["queries"]["rows"] == 3000
    assert result["queries"]["trace_id lookup p50_ms"] > 0 and result["queries"]["metadata filter p50_ms"] > 0
    after = (
        db.fetch("SELECT indexname FROM pg_indexes WHERE tablename = 'logs' ORDER BY 1"),
        db.fetch(
            "SELECT data_type FROM information_schema.columns WHERE table_name = 'logs' AND column_name = 'metadata'"
        ),
        db.fetch("SELECT relkind::text AS kind FROM pg_class WHERE relname = 'logs'"),
    )
    assert after == before
    assert db.count() == 0
