"""`python -m bench.logql [N]`: the LogQL targets of issue 30, timed through the app over N logs (default
1 M) spread over the last 24 hours, in an embedded PostgreSQL of its own (a temp dir).

Not yet a suite of `python -m bench` (no saved JSON, no report section): it prints p50 and min of five runs
per query, and the machine's load before and after, so that ratios can be compared within one run."""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
from fastapi.testclient import TestClient

from app import embedded
from app.config import Settings
from app.main import create_app
from app.storage import migrations
from bench.database import make_partitions

RUNS = 5
DAY_NS = 86_400 * 10**9
# The targets at 10 M logs: Explore's log volume ≤ 500 ms, a logs query ≤ 300 ms, a rate by service
# ≤ 1 s, a p99 of an unwrapped duration ≤ 1 s.
QUERIES = {
    "log volume 24h, step 5m": {
        "query": 'sum by (level, detected_level) (count_over_time({service_name=~".+"} | drop __error__[5m]))',
        "step": "300s",
    },
    "logs, limit 1000, backward": {"query": '{service_name="svc3"}', "limit": "1000"},
    "sum by service rate 5m, 24h": {
        "query": 'sum by (service_name) (rate({service_name=~".+"}[5m]))',
        "step": "300s",
    },
    "p99 unwrap duration_ms 5m, 24h": {
        "query": 'quantile_over_time(0.99, {service_name="svc3"} | unwrap duration_ms [5m]) by (service_name)',
        "step": "300s",
    },
    "|= needle, 24h": {"query": '{service_name=~".+"} |= "request 12345 "', "limit": "100"},
}


async def seed(url: str, count: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        await migrations.apply(conn)
        await make_partitions(conn)
        await conn.execute("TRUNCATE logs, log_counts")
        await conn.execute(
            """
            INSERT INTO logs (created_at, level, log_type, service, environment, message, duration_ms, trace_id,
                              metadata)
            SELECT now() - (g::float / $1) * interval '24 hours',
                   (ARRAY['DEBUG','INFO','INFO','INFO','WARN','ERROR'])[1 + g % 6]::log_level, 'BACKEND',
                   'svc' || (g % 20), 'production', 'request ' || g || ' done in ' || (g % 997) || 'ms',
                   (g % 997)::numeric, 'tr' || g, jsonb_build_object('region', 'eu-' || (g % 3))
            FROM generate_series(1, $1) g
            """,
            count,
        )
        await conn.execute("ANALYZE logs")
    finally:
        await conn.close()


def main(count: int) -> None:
    # The embedded server stops when this process exits (after the directory could be removed): the data
    # stays in the temp dir.
    home = tempfile.mkdtemp(prefix="bench-logql-")
    url = embedded.start(Path(home), "logqlbench")
    asyncio.run(seed(url, count))
    settings = Settings(_env_file=None, database_url=url, query_timeout=60, logql_max_rows=count,  # type: ignore[call-arg]
                        retention_days=0)  # fmt: skip
    print(f"{count} logs; load before: {os.getloadavg()[0]:.2f}")
    now = time.time_ns()
    with TestClient(create_app(settings)) as client:
        for name, params in QUERIES.items():
            times = []
            for _ in range(RUNS):
                started = time.perf_counter()
                response = client.get(
                    "/loki/api/v1/query_range", params={**params, "start": now - DAY_NS, "end": now}
                )
                times.append(time.perf_counter() - started)
                if response.status_code != 200:
                    raise SystemExit(f"{name}: {response.status_code} {response.text[:300]}")
            print(
                f"{name:34s} p50 {statistics.median(times) * 1000:7.0f} ms   min {min(times) * 1000:7.0f} ms"
            )
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
