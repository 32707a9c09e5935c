"""The logql suite: issue 30's LogQL targets timed through the app over N logs (default 10 M) spread over the
last 7 days, in the lab's database; and what LogQL's rollup (log_minutes) costs at ingest.

Queries: each is asked once to warm up, then RUNS times in this process (the app under FastAPI's TestClient, so no HTTP stack
is timed), p50 and min of the wall time, and PostgreSQL's CPU seconds per query from /proc (bench/cpu.py,
the cluster's postmaster and its backends). The count and rate queries are asked twice: with the start on
a minute (Grafana's steps are whole minutes; the rollup answers) and a second later (rows answer): the
difference is the rollup's.

Ingest: the writer's statements for batches of BATCH rows (COPY, then the summary's upsert in the same
transaction), PostgreSQL CPU per stored log with the rollup's upsert folded into the summary statement
(as the app runs) and without it (log_counts only, as before), alternated ROUNDS times.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from fastapi.testclient import TestClient

from app.config import Settings
from app.intake.rows import COLUMNS
from app.main import create_app
from app.storage import partitions, summary
from bench import cpu

DAYS = 7
RUNS = 5
BATCH = 1000
ROUNDS = 3
MINUTE_NS = 60 * 10**9
DAY_NS = 86_400 * 10**9
# name -> (query parameters, the target in ms or None, whether the start is on a minute)
QUERIES: dict[str, tuple[dict[str, str], float | None, bool]] = {
    "log volume": ({"query": 'sum by (level, detected_level) (count_over_time({service_name="svc3"} | drop __error__[1m]))',
                    "step": "60s"}, 500, True),
    "log volume, start off the minute": ({"query": 'sum by (level, detected_level) (count_over_time({service_name="svc3"} | drop __error__[1m]))',
                                          "step": "60s"}, None, False),
    "logs, limit 1000, backward": ({"query": '{service_name="svc3"}', "limit": "1000"}, 300, True),
    "sum by service rate 5m": ({"query": 'sum by (service_name) (rate({service_name=~".+"}[5m]))', "step": "300s"},
                               1000, True),
    "sum by service rate 5m, start off the minute": ({"query": 'sum by (service_name) (rate({service_name=~".+"}[5m]))',
                                                      "step": "300s"}, None, False),
    "p99 unwrap duration_ms 5m": ({"query": 'quantile_over_time(0.99, {service_name="svc3"} | unwrap duration_ms [5m]) by (service_name)',
                                   "step": "300s"}, 1000, True),
}  # fmt: skip

_SEED = """
INSERT INTO logs (created_at, level, log_type, service, environment, message, duration_ms, trace_id, metadata)
SELECT $2::timestamptz - (g::float8 / $1) * interval '7 days',
       (ARRAY['DEBUG','INFO','INFO','INFO','WARN','ERROR'])[1 + g % 6]::log_level, 'BACKEND',
       'svc' || (g % 20), (ARRAY['production','staging'])[1 + g % 2]::log_environment,
       'request ' || g || ' done in ' || (g % 997) || 'ms', (g % 997)::numeric, 'tr' || g,
       jsonb_build_object('region', 'eu-' || (g % 3))
FROM generate_series($3::bigint, $4::bigint) g
"""
SEED_CHUNK = 1_000_000


async def seed(dsn: str, logs: int, now: datetime) -> float:
    """`logs` rows spread evenly over the DAYS days before `now`, their rollup; seconds it took."""
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        for n in range(DAYS + 1):
            await partitions.create(conn, now.date() - timedelta(days=n))
        await conn.execute("TRUNCATE logs, log_counts, log_minutes")
        for first in range(1, logs + 1, SEED_CHUNK):
            await conn.execute(_SEED, logs, now, first, min(first + SEED_CHUNK - 1, logs))
        start = datetime(now.year, now.month, now.day, tzinfo=UTC) - timedelta(days=DAYS)
        for n in range(DAYS + 1):
            day = start + timedelta(days=n)
            await conn.execute(summary.REBUILD_MINUTES, day, day + timedelta(days=1))
        await conn.execute("ANALYZE logs")
        await conn.execute("ANALYZE log_minutes")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def _postmaster(dsn: str) -> int | None:
    conn = await asyncpg.connect(dsn)
    try:
        return cpu.postmaster_of(await conn.fetchval("SELECT pg_backend_pid()"))
    finally:
        await conn.close()


def _postgres_seconds(postmaster: int | None) -> float | None:
    return cpu.tree_seconds(postmaster) if postmaster is not None else None


def time_queries(dsn: str, logs: int, now_ns: int, progress: Callable[[str], None]) -> dict[str, Any]:
    postmaster = asyncio.run(_postmaster(dsn))
    # No search index: its housekeeping would re-index the seeded week in this process while queries are
    # timed (and no query here reads it).
    settings = Settings(_env_file=None, database_url=dsn, query_timeout=120, logql_max_rows=max(logs, 1),  # type: ignore[call-arg]
                        retention_days=0, search_index=False)  # fmt: skip
    # The last 24 hours, ending on a minute (or a second after one).
    end = now_ns // MINUTE_NS * MINUTE_NS
    out: dict[str, Any] = {}
    with TestClient(create_app(settings)) as client:
        for name, (params, target, aligned) in QUERIES.items():
            progress(f"logql: {name}")
            shift = 0 if aligned else 10**9
            span = {"start": str(end - DAY_NS + shift), "end": str(end + shift)}
            times, series = [], 0
            client.get("/loki/api/v1/query_range", params={**params, **span})  # warm: plans, pool, caches
            pg_before, me_before = _postgres_seconds(postmaster), time.process_time()
            for _ in range(RUNS):
                started = time.perf_counter()
                response = client.get("/loki/api/v1/query_range", params={**params, **span})
                times.append(time.perf_counter() - started)
                if response.status_code != 200:
                    raise RuntimeError(f"{name}: {response.status_code} {response.text[:300]}")
                series = len(response.json()["data"]["result"])
            pg_after, me_after = _postgres_seconds(postmaster), time.process_time()
            out[name] = {
                "query": params["query"],
                "step": params.get("step"),
                "start_on_minute": aligned,
                "p50_ms": round(statistics.median(times) * 1000, 1),
                "min_ms": round(min(times) * 1000, 1),
                "target_ms": target,
                "postgres_cpu_ms_per_query": (
                    round((pg_after - pg_before) / RUNS * 1000, 1)
                    if pg_before is not None and pg_after is not None
                    else None
                ),
                "app_cpu_ms_per_query": round((me_after - me_before) / RUNS * 1000, 1),
                "series": series,
            }
    return out


_WITHOUT_ROLLUP = summary._ADD  # log_counts' upsert alone: the summary statement before the rollup


async def ingest_cost(
    dsn: str, pool: list[tuple[Any, ...]], rounds: int, progress: Callable[[str], None]
) -> dict[str, Any]:
    """PostgreSQL CPU per stored log, COPY + summary statement per batch, with and without the rollup."""
    conn = await asyncpg.connect(dsn)
    postmaster = cpu.postmaster_of(await conn.fetchval("SELECT pg_backend_pid()"))
    batches = [pool[i : i + BATCH] for i in range(0, len(pool) - BATCH + 1, BATCH)]
    seconds: dict[str, list[float]] = {"with rollup": [], "without rollup": []}
    try:
        for n in range(rounds):
            for arm, spent in seconds.items():
                progress(f"logql: ingest {arm} {n + 1}/{rounds}")
                before = _postgres_seconds(postmaster)
                for batch in batches:
                    async with conn.transaction():
                        await conn.copy_records_to_table("logs", records=batch, columns=COLUMNS)
                        tally = summary.counts(batch)
                        if arm == "with rollup":
                            await summary.add(conn, tally)
                        else:
                            hours = sorted(tally.hours.items())
                            await conn.execute(
                                _WITHOUT_ROLLUP,
                                [k[0] for k, _ in hours], [k[1] for k, _ in hours], [k[2] for k, _ in hours],
                                [v for _, v in hours],
                            )  # fmt: skip
                after = _postgres_seconds(postmaster)
                if before is not None and after is not None:
                    spent.append(after - before)
        await conn.execute("TRUNCATE logs, log_counts, log_minutes")
    finally:
        await conn.close()
    logs = len(batches) * BATCH
    per_log = {
        arm: (round(statistics.median(s) / logs * 1e6, 2) if s else None) for arm, s in seconds.items()
    }
    with_us, without_us = per_log["with rollup"], per_log["without rollup"]
    return {
        "batch": BATCH,
        "logs_per_round": logs,
        "rounds": rounds,
        "postgres_cpu_us_per_log": per_log,
        "rollup_share": round(with_us / without_us - 1, 3) if with_us and without_us else None,
    }


def run(
    dsn: str, pool: list[tuple[Any, ...]], logs: int, progress: Callable[[str], None], rounds: int = ROUNDS
) -> dict[str, Any]:
    progress("logql: ingest cost")
    ingest = asyncio.run(ingest_cost(dsn, pool, rounds, progress))
    now = datetime.now(UTC)
    load_before = os.getloadavg()[0]
    progress(f"logql: seeding {logs} logs")
    seeded_s = asyncio.run(seed(dsn, logs, now))
    load_seeded = os.getloadavg()[0]
    queries = time_queries(dsn, logs, int(now.timestamp() * 10**9), progress)
    return {
        "logs": logs,
        "days": DAYS,
        "seed_s": round(seeded_s, 1),
        "load_1m": {"before": load_before, "after_seed": load_seeded, "after": os.getloadavg()[0]},
        "queries": queries,
        "ingest": ingest,
    }


STEPS = len(QUERIES) + 2 + 2 * ROUNDS
