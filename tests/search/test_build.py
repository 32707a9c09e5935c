"""The index's builders: rows written around the index are re-indexed by the backfill, a backfill killed half
way leaves answers exact and is redone, and retention takes a day's blocks with its partition."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.query import parse
from app.search import build, lookup
from app.storage import retention
from tests.support import DB, make_settings, run

NOW = datetime.now(UTC).replace(microsecond=0)
NEEDLE = "req-4be1f7c20a9d"


@pytest.fixture
def apps(db: DB, database_url: str) -> Iterator[tuple[TestClient, TestClient, DB]]:
    with (
        TestClient(create_app(make_settings(database_url))) as on,
        TestClient(create_app(make_settings(database_url, search_index=False))) as off,
    ):
        yield on, off, db


def _around_the_index(db: DB) -> None:
    """Rows on two days written with plain SQL (as a restore or a bulk load would): no blocks."""
    for days in (0, 1):
        db.fetch(
            "INSERT INTO logs (created_at, log_type, service, message, metadata)"
            " SELECT $1::timestamptz - n * interval '1 second', 'BACKEND', 'api', 'call ' || n || ' done',"
            " jsonb_build_object('order_id', 'ord-' || n) FROM generate_series(1, 300) n",
            NOW - timedelta(days=days),
        )
    db.fetch(
        "INSERT INTO logs (created_at, log_type, service, message) VALUES ($1, 'BACKEND', 'api', $2)",
        NOW - timedelta(days=1, minutes=1),
        f"payment failed for {NEEDLE} twice",
    )


def _narrowed(db: DB, params: dict[str, str]) -> Any:
    async def go() -> Any:
        conn = await asyncpg.connect(db.url)
        try:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                return await lookup.narrow(conn, parse({k: [v] for k, v in params.items()}))
        finally:
            await conn.close()

    return run(go())


def _backfill(db: DB) -> list[str]:
    async def go() -> list[str]:
        conn = await asyncpg.connect(db.url)
        try:
            return await build.backfill(conn)
        finally:
            await conn.close()

    return run(go())


QUERIES = [{"q": NEEDLE}, {"meta.order_id": "ord-7"}, {"q": f"for {NEEDLE} "}]


def _same(on: TestClient, off: TestClient) -> None:
    for params in QUERIES:
        a, b = on.get("/logs", params=params), off.get("/logs", params=params)
        assert a.status_code == b.status_code == 200
        assert a.content == b.content
        assert a.json()["logs"], params


def test_rows_written_around_the_index_are_found_then_reindexed(
    apps: tuple[TestClient, TestClient, DB],
) -> None:
    on, off, db = apps
    assert (
        on.post(
            "/logs", content=json.dumps({"logs": [{"level": "INFO", "service": "api", "message": "indexed"}]})
        ).status_code
        == 200
    )
    _around_the_index(db)
    assert db.fetch("SELECT count(*) AS n FROM search_dirty")[0]["n"] == 3  # one per transaction
    assert _narrowed(db, {"q": NEEDLE}) is None  # not covered: the scan answers
    _same(on, off)
    assert len(_backfill(db)) == 2
    assert not db.fetch("SELECT FROM search_dirty")
    assert _narrowed(db, {"q": NEEDLE}) is not None
    _same(on, off)
    # Nothing more to do, and SEARCH_INDEX=off writes switch the index off again.
    assert _backfill(db) == []
    assert (
        off.post(
            "/logs", content=json.dumps({"logs": [{"level": "INFO", "service": "api", "message": "x"}]})
        ).status_code
        == 200
    )
    assert _narrowed(db, {"q": NEEDLE}) is None
    _same(on, off)


KILLED = """
import asyncio, os, signal, sys
import asyncpg
from app.search import build

async def main():
    conn = await asyncpg.connect(sys.argv[1])
    await build.backfill(conn, hook=lambda table: os.kill(os.getpid(), signal.SIGKILL))

asyncio.run(main())
"""


def test_a_backfill_killed_half_way_leaves_answers_exact_and_is_redone(
    apps: tuple[TestClient, TestClient, DB],
) -> None:
    on, off, db = apps
    _around_the_index(db)
    # Killed after rebuilding the first of the two days, before its transaction commits.
    killed = subprocess.run([sys.executable, "-c", KILLED, db.url], check=False, timeout=120)
    assert killed.returncode == -9
    assert db.fetch("SELECT count(*) AS n FROM search_dirty")[0]["n"] == 3  # one per transaction
    assert _narrowed(db, {"q": NEEDLE}) is None
    _same(on, off)
    assert len(_backfill(db)) == 2
    assert _narrowed(db, {"q": NEEDLE}) is not None
    _same(on, off)


def test_retention_drops_a_days_blocks_with_its_partition(apps: tuple[TestClient, TestClient, DB]) -> None:
    on, _, db = apps
    body = {
        "logs": [
            {"level": "INFO", "service": "api", "message": f"hello {NEEDLE} x", "created_at": NOW.isoformat()}
        ]
    }
    assert on.post("/logs", content=json.dumps(body)).status_code == 200
    today = NOW.date()
    assert db.fetch("SELECT count(*) AS n FROM search_blocks WHERE day = $1", today)[0]["n"] == 1

    async def expire() -> list[str]:
        conn = await asyncpg.connect(db.url)
        try:
            return await retention.run(conn, 1, today=today + timedelta(days=2))
        finally:
            await conn.close()

    assert f"logs_p{today:%Y%m%d}" in run(expire())
    assert db.fetch("SELECT count(*) AS n FROM search_blocks WHERE day <= $1", today)[0]["n"] == 0


def test_compaction_merges_a_closed_days_blocks_and_late_rows_keep_theirs(
    apps: tuple[TestClient, TestClient, DB],
) -> None:
    on, off, db = apps
    # Twelve hours of yesterday, one log in each: twelve blocks.
    yesterday = datetime.combine(NOW.date() - timedelta(days=1), datetime.min.time(), UTC) + timedelta(
        hours=1
    )
    for n in range(12):
        message = f"call {n} for {NEEDLE}" if n == 5 else f"call {n} done"
        log = {"level": "INFO", "service": "api", "message": message, "metadata": {"order_id": f"ord-{n}"}}
        log["created_at"] = (yesterday + timedelta(minutes=70 * n)).isoformat()
        assert on.post("/logs", content=json.dumps({"logs": [log]})).status_code == 200
    day = yesterday.date()

    def blocks() -> int:
        return db.fetch("SELECT count(*) AS n FROM search_blocks WHERE day = $1", day)[0]["n"]

    before = blocks()
    assert before >= 4

    async def compact() -> list[str]:
        conn = await asyncpg.connect(db.url)
        try:
            return await build.compact(conn, today=day + timedelta(days=1))
        finally:
            await conn.close()

    assert run(compact()) == [f"logs_p{day:%Y%m%d}"]
    assert blocks() == 1
    _same_for(on, off, [{"q": NEEDLE}, {"meta.order_id": "ord-7"}])
    assert _narrowed(db, {"q": NEEDLE}) is not None
    # A row arriving late for the compacted day: its own block, found.
    late = {
        "level": "INFO",
        "service": "api",
        "message": f"late {NEEDLE} again",
        "created_at": yesterday.isoformat(),
    }
    assert on.post("/logs", content=json.dumps({"logs": [late]})).status_code == 200
    assert blocks() == 2
    assert len(on.get("/logs", params={"q": NEEDLE}).json()["logs"]) == 2
    _same_for(on, off, [{"q": NEEDLE}])
    assert run(compact()) == []  # two blocks for the day's rows: nothing to gain


def _same_for(on: TestClient, off: TestClient, queries: list[dict[str, str]]) -> None:
    for params in queries:
        a, b = on.get("/logs", params=params), off.get("/logs", params=params)
        assert a.status_code == b.status_code == 200
        assert a.content == b.content and a.json()["logs"], params
