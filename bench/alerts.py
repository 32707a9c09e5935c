"""The alerts suite: what evaluating alert rules costs, and whether it slows ingest.

1. The table is filled to `rows` logs through the server's own writer, spread evenly over the last
   scale.DAYS days (scale.py's fill), then VACUUM ANALYZE. RULES rules of realistic shapes (a service and a
   level, min_level, a text search, a metadata value, everything) over windows of 1 to 60 minutes are
   evaluated by the server's own pass (`app.alerts.evaluate.run_once`) PASSES times: the pass's time, each
   rule's time, and EXPLAIN (ANALYZE, BUFFERS) of each shape's count at a 5-minute window are recorded.
   Thresholds are out of reach, so nothing is sent: the cost measured is the counting.
2. Ingest, same run, same table: `python -m app` (one worker) under closed-loop load with ALERT_INTERVAL
   a day (evaluation idle) and 1 s (a pass a second after the last one ended: evaluation almost non-stop,
   where the default is 60 s), alternated REPEATS times; logs/s of each, their ratio, and how many rules
   each evaluating arm evaluated.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import uvloop

from app.alerts import evaluate, rules
from app.alerts.notify import Notifier
from app.config import Settings
from app.database import Database
from bench import db, http, scale
from bench.data import LogFactory, body

Row = tuple[Any, ...]
RULES = 100
PASSES = 5
REPEATS = 2
CLIENTS = 8
BATCH = 100
# (share of the rules, window seconds)
WINDOWS = [(25, 60), (40, 300), (25, 900), (10, 3600)]
UNREACHABLE = 2**31 - 1


def shapes(services: Sequence[str]) -> dict[str, dict[str, Any]]:
    """One query per kind of rule people write."""
    return {
        "service + level": {"service": services[0], "level": ["ERROR", "FATAL"]},
        "min_level": {"min_level": "ERROR"},
        "text search": {"q": "declined"},
        "metadata": {"meta.region": "eu-west-1", "min_level": "WARN"},
        "service + text": {"service": services[1], "q": "timeout"},
        "everything": {},
    }


def rule_set(services: Sequence[str]) -> list[dict[str, Any]]:
    kinds = list(shapes(services).values())
    windows = [seconds for share, seconds in WINDOWS for _ in range(share * RULES // 100)]
    out = []
    for n in range(RULES):
        filters = dict(kinds[n % len(kinds)])
        if "service" in filters:
            filters["service"] = services[n % len(services)]
        out.append({"name": f"bench {n}", "query": filters, "window_seconds": windows[n % len(windows)]})
    return out


async def _add_rules(conn: asyncpg.Connection, services: Sequence[str]) -> None:
    await conn.execute("TRUNCATE alert_rules")
    for spec in rule_set(services):
        rule = rules.RuleIn(**spec, threshold=UNREACHABLE, notify=["http://127.0.0.1:9/"], renotify_seconds=0)
        await rules.create(conn, rules.check(rule))


async def _evaluation(dsn: str, services: Sequence[str]) -> dict[str, Any]:
    settings = Settings(_env_file=None, database_url=dsn, db_pool_min_size=1, db_pool_max_size=2)  # type: ignore[call-arg]
    database = Database(settings)
    notifier = Notifier(attempts=1)
    conn = await db.connect(dsn)
    try:
        await _add_rules(conn, services)
        passes = []
        for _ in range(PASSES):
            started = time.perf_counter()
            done = await evaluate.run_once(database, notifier)
            passes.append((time.perf_counter() - started) * 1000)
            if done.get("alert_rules_evaluated") != RULES or done.get("alert_notifications"):
                raise RuntimeError(f"alerts: a pass did not evaluate every rule quietly: {done}")
        per_rule = await _per_rule(conn)
        plans = await _plans(conn, services)
        await conn.execute("TRUNCATE alert_rules")
    finally:
        await conn.close()
        await notifier.close()
        await database.close()
    return {
        "rules": RULES,
        "pass_ms": [round(ms, 1) for ms in passes],
        "pass_p50_ms": round(statistics.median(passes), 1),
        "per_rule": per_rule,
        "plans": plans,
    }


async def _per_rule(conn: asyncpg.Connection) -> dict[str, Any]:
    """Each rule's count timed on its own, grouped by shape and window: p50 and max ms, rows counted."""
    groups: dict[str, list[tuple[float, int]]] = {}
    for rule in await conn.fetch(f"SELECT {rules.COLUMNS} FROM alert_rules ORDER BY id"):
        filters = rules.filters_of(rule)
        at = datetime.now(UTC)
        parsed = evaluate.window(filters, at - timedelta(seconds=rule["window_seconds"]), at)
        started = time.perf_counter()
        count = await conn.fetchval(evaluate.count_sql(parsed), *parsed.args)
        key = f"{', '.join(sorted(filters)) or 'everything'} / {rule['window_seconds']} s"
        groups.setdefault(key, []).append(((time.perf_counter() - started) * 1000, count))
    return {
        key: {
            "rules": len(values),
            "p50_ms": round(statistics.median(ms for ms, _ in values), 2),
            "max_ms": round(max(ms for ms, _ in values), 2),
            "rows_counted_p50": int(statistics.median(n for _, n in values)),
        }
        for key, values in sorted(groups.items())
    }


async def _plans(conn: asyncpg.Connection, services: Sequence[str]) -> dict[str, str]:
    at = datetime.now(UTC)
    plans = {}
    for name, filters in shapes(services).items():
        parsed = evaluate.window(filters, at - timedelta(seconds=300), at)
        lines = await conn.fetch(
            f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {evaluate.count_sql(parsed)}", *parsed.args
        )
        plans[name] = "\n".join(r[0] for r in lines)
    return plans


@contextmanager
def _env(**values: str) -> Iterator[None]:
    # bench.http.server passes this process's environment on to the server it starts.
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


async def _stored(dsn: str, since: datetime) -> tuple[int, int]:
    """Logs stored, and rules evaluated since `since`."""
    conn = await asyncpg.connect(dsn)
    try:
        return (
            await conn.fetchval("SELECT count(*) FROM logs"),
            await conn.fetchval("SELECT count(*) FROM alert_rules WHERE last_evaluated_at >= $1", since),
        )
    finally:
        await conn.close()


def _ingest_arm(
    dsn: str, interval: float, bodies: Sequence[bytes], warmup: float, duration: float
) -> dict[str, Any]:
    with _env(ALERT_INTERVAL=str(interval)), http.server(dsn, "group") as (_, port):
        requests = http.build_requests(port, bodies, False)
        started = datetime.now(UTC)
        before, _ = asyncio.run(_stored(dsn, started))
        warm, measured, seconds = uvloop.run(http.load(port, requests, CLIENTS, warmup, duration))
        after, evaluated = asyncio.run(_stored(dsn, started))
    if after - before != warm.acknowledged + measured.acknowledged:
        raise db.RowCountMismatch(f"alerts: {warm.acknowledged + measured.acknowledged} acknowledged, "
                                  f"{after - before} stored")  # fmt: skip
    return {
        "alert_interval_s": interval,
        "logs_per_s": round(measured.acknowledged / seconds, 1),
        # The last pass of the arm may still be running: a rule evaluated before it counts once.
        "rules_evaluated_during_the_arm": evaluated,
    }


def _ingest(dsn: str, services: Sequence[str], warmup: float, duration: float,
            progress: Callable[[str], None]) -> dict[str, Any]:  # fmt: skip
    factory = LogFactory(11)
    bodies = [body(factory.batch(BATCH)) for _ in range(32)]

    async def add() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await _add_rules(conn, services)
        finally:
            await conn.close()

    asyncio.run(add())
    arms: list[dict[str, Any]] = []
    for repeat in range(REPEATS):
        for interval in (86_400.0, 1.0):
            progress(f"alerts: ingest, ALERT_INTERVAL={interval:g} ({repeat + 1}/{REPEATS})")
            arms.append(_ingest_arm(dsn, interval, bodies, warmup, duration))
    idle = statistics.median(a["logs_per_s"] for a in arms if a["alert_interval_s"] > 1)
    busy = statistics.median(a["logs_per_s"] for a in arms if a["alert_interval_s"] == 1)
    return {
        "arms": arms,
        "idle_logs_per_s": idle,
        "evaluating_logs_per_s": busy,
        "ratio": round(busy / idle, 3),
    }


def run(dsn: str, pool: Sequence[Row], rows: int, warmup: float, duration: float,
        progress: Callable[[str], None]) -> dict[str, Any]:  # fmt: skip
    services = sorted({row[3] for row in pool})

    async def fill() -> None:
        settings = Settings(_env_file=None, database_url=dsn, db_pool_min_size=1, db_pool_max_size=4)  # type: ignore[call-arg]
        database = Database(settings)
        try:
            conn = await db.connect(dsn)
            try:
                await conn.execute("TRUNCATE logs, log_counts, alert_rules")
                # The rows' span ends an hour ahead, so that every window ending now (the pass's, later)
                # holds its share of them however long the fill takes.
                await scale._fill(database, pool, 0, rows, rows, datetime.now(UTC) + timedelta(hours=1))
                await conn.execute("VACUUM ANALYZE logs")
            finally:
                await conn.close()
        finally:
            await database.close()

    progress(f"alerts: filling to {rows:,} rows")
    asyncio.run(fill())
    progress(f"alerts: {RULES} rules evaluated at {rows:,} rows")
    evaluation = asyncio.run(_evaluation(dsn, services))
    ingest = _ingest(dsn, services, warmup, duration, progress)

    async def clean() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("TRUNCATE logs, log_counts, alert_rules")
        finally:
            await conn.close()

    asyncio.run(clean())
    return {"rows": rows, "evaluation": evaluation, "ingest": ingest}
