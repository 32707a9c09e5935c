"""/stats from the summary the writer keeps: exact against count(*) after concurrent ingest, soft deletes,
compaction, and at the edge of the last 24 hours."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from fastapi.testclient import TestClient

from app.config import IngestMode
from app.database import Database
from app.intake.rows import parse
from app.intake.writer import Batch, create
from app.storage import summary
from tests.logql.test_rollup import FROM_ROWS, MINUTES
from tests.support import DB, log_entry, make_settings

# Wide enough for test_retention's newest kept day (noon, 29 days ago) at any time of today.
WIDE = (timedelta(days=30), timedelta(hours=23))


def plain_stats(db: DB) -> dict[str, Any]:
    """/stats's answer written plainly in SQL over the rows themselves."""
    rows = db.fetch(
        "SELECT service, level::text AS level, count(*) AS n,"
        " count(*) FILTER (WHERE created_at >= now() - interval '24 hours') AS recent"
        " FROM logs WHERE NOT deleted GROUP BY 1, 2"
    )
    services: dict[str, int] = {}
    levels: dict[str, int] = {}
    for r in rows:
        services[r["service"]] = services.get(r["service"], 0) + r["n"]
        levels[r["level"]] = levels.get(r["level"], 0) + r["n"]
    return {
        "total_logs": sum(services.values()),
        "services": [
            {"service": s, "count": n} for s, n in sorted(services.items(), key=lambda i: (-i[1], i[0]))
        ],
        "by_level": levels,
        "recent_24h": sum(r["recent"] for r in rows),
    }


def write_concurrently(database_url: str, bodies: list[bytes], mode: IngestMode, servers: int = 3) -> None:
    async def run() -> None:
        settings = make_settings(database_url)
        databases = [Database(settings) for _ in range(servers)]
        writers = [create(settings, database, mode) for database in databases]
        try:
            await asyncio.gather(
                *(
                    writers[i % servers].write(Batch(parse(raw, 1000, window=WIDE), b"ok"))
                    for i, raw in enumerate(bodies)
                )
            )
        finally:
            for writer, database in zip(writers, databases, strict=True):
                await writer.close()
                await database.close()

    asyncio.run(run())


def bodies(count: int) -> list[bytes]:
    now = datetime.now(UTC)
    out = []
    for i in range(count):
        entries = [
            log_entry(
                service=f"svc-{(i + j) % 5}",
                level=["INFO", "ERROR", "WARN", "DEBUG"][j % 4],
                created_at=(now - timedelta(hours=(i * 7 + j) % 70, minutes=j)).isoformat(),
            )
            for j in range(1 + i % 13)
        ]
        out.append(json.dumps({"logs": entries}).encode())
    return out


def test_stats_are_exact_after_concurrent_ingest_by_several_servers(
    client: TestClient, db: DB, database_url: str
) -> None:
    write_concurrently(database_url, bodies(120), IngestMode.group)
    write_concurrently(database_url, bodies(40), IngestMode.direct)
    assert client.get("/stats").json() == plain_stats(db)
    # Concurrent writers wrote to shards of their own, not all to one row per key.
    assert db.fetch("SELECT count(DISTINCT shard) AS n FROM log_counts")[0]["n"] > 1


def test_soft_deletes_and_undeletes_follow(client: TestClient, db: DB, database_url: str) -> None:
    write_concurrently(database_url, bodies(30), IngestMode.group, servers=1)
    db.fetch("UPDATE logs SET deleted = TRUE WHERE id % 3 = 0")
    assert client.get("/stats").json() == plain_stats(db)
    db.fetch("UPDATE logs SET deleted = FALSE WHERE id % 6 = 0")
    db.fetch("UPDATE logs SET deleted = TRUE WHERE id % 6 = 0")  # twice the same way: counted once
    assert client.get("/stats").json() == plain_stats(db)


def test_compaction_changes_no_total(client: TestClient, db: DB, database_url: str) -> None:
    write_concurrently(database_url, bodies(80), IngestMode.group)
    before = client.get("/stats").json()
    rows_before = db.fetch("SELECT count(*) AS n FROM log_counts")[0]["n"]

    async def compact() -> int:
        conn = await asyncpg.connect(database_url)
        try:
            return await summary.compact(conn)
        finally:
            await conn.close()

    assert asyncio.run(compact()) > 0
    assert client.get("/stats").json() == before == plain_stats(db)
    assert db.fetch("SELECT count(*) AS n FROM log_counts")[0]["n"] < rows_before
    assert (
        db.fetch(
            "SELECT count(*) AS n FROM log_counts WHERE shard <> 0 AND hour < now() - interval '2 hours'"
        )[0]["n"]
        == 0
    )
    # LogQL's minutes too: shards folded, the counts still the rows'.
    assert (
        db.fetch(
            "SELECT count(*) AS n FROM log_minutes WHERE shard <> 0 AND minute < now() - interval '2 hours'"
        )[0]["n"]
        == 0
    )
    assert db.fetch(MINUTES) == db.fetch(FROM_ROWS)


def test_recent_24h_is_exact_at_the_edge(client: TestClient, db: DB, database_url: str) -> None:
    # Rows a minute either side of 24 hours ago fall in the same summary hour: only a count of the rows
    # themselves can tell them apart.
    now = datetime.now(UTC)
    entries = [
        log_entry(created_at=(now - timedelta(hours=24, minutes=m)).isoformat()) for m in (-2, -1, 1, 2, 90)
    ]
    write_concurrently(database_url, [json.dumps({"logs": entries}).encode()], IngestMode.direct, servers=1)
    stats = client.get("/stats").json()
    assert stats["total_logs"] == 5
    assert stats["recent_24h"] == 2 == plain_stats(db)["recent_24h"]
