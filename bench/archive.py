"""The archive suite: one closed day of N logs moved from PostgreSQL to Parquet, and GET /logs over it.

For each size: the day's partition is filled by COPY with the generator's realistic rows (the parsed pool
cycled, re-timed evenly over the day, each row given its own trace id per ten logs and its own id), then
VACUUM ANALYZE. Measured: the partition's bytes per log (table + its indexes); GET /logs's newest page
and a filtered page over that day (the app in process, p50 of QUERY_RUNS); the pass itself as
`python -m app archive` in a child process (wall time → rows/s; its peak RSS from the kernel, see _LAUNCH); the
Parquet bytes per log; the same two pages again, now read from the files.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from app.config import Settings
from app.intake.rows import COLUMNS
from app.main import create_app
from app.storage import partitions
from app.storage.archive import ROW_GROUP_ROWS  # noqa: F401 - bench.archive.ROW_GROUP_ROWS, saved with the results
from bench import db

Row = tuple[Any, ...]
QUERY_RUNS = 25
# The archived day: far enough back that the pass (ARCHIVE_AFTER_DAYS) takes it and nothing the other suites
# write (the last ten days).
AGE_DAYS = 25
AFTER_DAYS = 20
ROOT = Path(__file__).parent.parent


def day_archived() -> date:
    return datetime.now(UTC).date() - timedelta(days=AGE_DAYS)


async def _fill(dsn: str, pool: Sequence[Row], size: int, day: date) -> None:
    conn = await db.connect(dsn)
    try:
        table = partitions.name(day)
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.execute("DELETE FROM archive_parts WHERE day = $1", day)
        await partitions.create(conn, day)
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        step = timedelta(days=1) / size
        for begin in range(0, size, 50_000):
            rows = []
            for k in range(begin, min(begin + 50_000, size)):
                row = list(pool[k % len(pool)])
                row[0] = start + step * k
                row[6] = f"{k // 10:032x}"
                rows.append(tuple(row))
            await conn.copy_records_to_table(table, records=rows, columns=COLUMNS)
        await conn.execute(f"VACUUM ANALYZE {table}")
    finally:
        await conn.close()


def _pages(dsn: str, archive_url: str, day: date, service: str) -> dict[str, float]:
    """p50 ms of GET /logs's newest page of the day and a filtered page of it."""
    settings = Settings(_env_file=None, database_url=dsn, archive_url=archive_url, db_pool_min_size=1,  # type: ignore[call-arg]
                        db_pool_max_size=2, retention_days=0)  # fmt: skip
    since, until = f"{day}T00:00:00Z", f"{day + timedelta(days=1)}T00:00:00Z"
    requests = {
        "newest page": {"since": since, "until": until},
        "filtered page": {"since": since, "until": until, "service": service, "min_level": "WARN"},
    }
    result = {}
    with TestClient(create_app(settings)) as client:
        for name, params in requests.items():
            times = []
            for _ in range(QUERY_RUNS + 2):
                started = time.perf_counter()
                response = client.get("/logs", params=params)
                times.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200 or len(response.json()["logs"]) != 100:
                    raise db.RowCountMismatch(
                        f"archive: {name} answered {response.status_code} {response.text[:200]}"
                    )
            result[f"{name} p50_ms"] = round(db.percentile(times[2:], 50), 3)
    return result


# Starts the command and reports its peak RSS (KiB) as the last line of stderr. A child forked from the bench
# itself would report the bench's own RSS as its peak (Linux keeps the larger of the memory it had before
# exec and after: 290-375 MB were the bench's, not the pass's); spawned from this small process, its peak is
# its own.
_LAUNCH = """
import os, sys
child = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ)
_, status, usage = os.wait4(child, 0)
print(f"peak_rss_kib={usage.ru_maxrss}", file=sys.stderr)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _pass(dsn: str, archive_url: str) -> dict[str, Any]:
    """`python -m app archive` as cron would run it; wall time and its peak RSS."""
    env = {**os.environ, "DATABASE_URL": dsn, "ARCHIVE_URL": archive_url, "ARCHIVE_AFTER_DAYS": str(AFTER_DAYS),
           "RETENTION_DAYS": "0"}  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _LAUNCH, sys.executable, "-m", "app", "archive"], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False)  # fmt: skip
    seconds = time.perf_counter() - started
    last = done.stderr.rstrip("\n").rpartition("\n")[2]
    if done.returncode != 0 or not last.startswith("peak_rss_kib="):
        raise RuntimeError(f"archive pass failed ({done.returncode}): {done.stderr[-2000:]}")
    return {
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(int(last.removeprefix("peak_rss_kib=")) / 1024, 1),
        "output": done.stdout.strip(),
    }


async def _sizes(dsn: str, day: date) -> dict[str, Any]:
    conn = await db.connect(dsn)
    try:
        hot = await conn.fetchval("SELECT pg_total_relation_size(to_regclass($1))", partitions.name(day))
        part = await conn.fetchrow("SELECT rows, bytes, row_groups FROM archive_parts WHERE day = $1", day)
        return {"hot_bytes": hot, "part": dict(part) if part else None}
    finally:
        await conn.close()


async def _cleanup(dsn: str, day: date) -> None:
    conn = await db.connect(dsn)
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {partitions.name(day)}")
        await conn.execute("DELETE FROM archive_parts WHERE day = $1", day)
    finally:
        await conn.close()


def run(
    dsn: str, pool: Sequence[Row], sizes: Sequence[int], progress: Callable[[str], None]
) -> list[dict[str, Any]]:
    day = day_archived()
    service = pool[0][3]
    results = []
    for size in sizes:
        directory = tempfile.mkdtemp(prefix="logsave-archive-bench-")
        try:
            progress(f"archive: filling a day with {size:,} rows")
            asyncio.run(_fill(dsn, pool, size, day))
            hot_bytes = asyncio.run(_sizes(dsn, day))["hot_bytes"]
            progress(f"archive: GET /logs over the hot day, {size:,} rows")
            hot = _pages(dsn, directory, day, service)
            progress(f"archive: the pass, {size:,} rows")
            moved = _pass(dsn, directory)
            part = asyncio.run(_sizes(dsn, day))["part"]
            if not part or part["rows"] != size:
                raise db.RowCountMismatch(f"archive: {size} rows in the day but {part} archived")
            cold = _pages(dsn, directory, day, service)
            result: dict[str, Any] = {
                "rows": size,
                "pg_bytes_per_log": round(hot_bytes / size, 1),
                "parquet_bytes_per_log": round(part["bytes"] / size, 1),
                "row_groups": part["row_groups"],
                "pass_seconds": moved["seconds"],
                "export_rows_per_s": round(size / moved["seconds"]),
                "pass_peak_rss_mb": moved["peak_rss_mb"],
            }
            result["ratio"] = round(result["pg_bytes_per_log"] / result["parquet_bytes_per_log"], 1)
            for name in hot:
                result[f"hot {name}"] = hot[name]
                result[f"archived {name}"] = cold[name]
            results.append(result)
        finally:
            asyncio.run(_cleanup(dsn, day))
            shutil.rmtree(directory, ignore_errors=True)
    return results
