"""`python -m bench [all|db|http|otlp|agents|syslog|aws|limits|scale|archive|client|profile|coldstart|alerts|steps REV...|search|logql|report] [--quick] [--logs N] [--out DIR]`: measure, save raw JSON, render
the report."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from app.config import Settings
from app.intake.rows import parse
from bench import (
    agents,
    alerts,
    archive,
    aws,
    client,
    coldstart,
    database,
    db,
    http,
    limits,
    logql,
    lone,
    machine,
    otlp,
    profile,
    report,
    scale,
    search,
    steps,
    syslog,
)
from bench.data import LogFactory, body

ROOT = Path(__file__).parent.parent

# Every suite that measures ("report" only renders what they wrote).
SUITES = ("all", "db", "http", "otlp", "agents", "syslog", "aws", "limits", "scale", "archive", "client", "profile",
          "coldstart", "alerts", "steps", "search", "logql")  # fmt: skip
# (batch sizes, warm-up s, measured s) per suite
FULL = {
    "db": ([1, 10, 100, 1000, 10000], 0.5, 3.0),
    "http": (1.0, 5.0),
    "scale": [1_000_000, 3_000_000, 10_000_000],
    "archive": [1_000_000, 3_000_000, 10_000_000],
    "client": (200_000, 300_000),  # calls timed, logs sent for throughput
    "alerts": 10_000_000,  # rows the rules are evaluated against
    "search": (10_000_000, 100_000),  # logs over the week, parsed logs in the pool they are cycled from
    "logql": (10_000_000, 50_000),  # logs over the week, parsed logs written per ingest arm and round
}
QUICK = {
    "db": ([10, 1000], 0.1, 0.3),
    "http": (0.3, 1.0),
    "scale": [5_000, 20_000],
    "archive": [5_000],
    "client": (5_000, 5_000),
    "alerts": 20_000,
    "search": (20_000, 5_000),
    "logql": (20_000, 2_000),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "suite",
        nargs="?",
        default="all",
        choices=[*SUITES, "report"],
    )
    parser.add_argument("revisions", nargs="*", help="steps: git revisions whose server to measure, in order")
    parser.add_argument("--quick", action="store_true", help="a smoke run in well under a minute")
    parser.add_argument(
        "--logs", type=int, help="search, logql: logs generated over the week (default 10,000,000)"
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "results", help="where JSON, REPORT.md and plots go"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)

    if args.suite == "steps" and not args.revisions:
        parser.error("steps needs the git revisions to compare, oldest first")
    # A smoke run needs no profiler: without py-spy the profile suite is left out, and says so. A full run
    # stops here rather than after the suites before it.
    skip_profile = args.suite in ("all", "profile") and profile.py_spy() is None
    if skip_profile and not args.quick:
        parser.error(f"the profile suite needs py-spy beside {sys.executable} or on PATH: {profile.MISSING}")
    if skip_profile:
        print(f"profile suite skipped: py-spy is neither beside {sys.executable} nor on PATH", flush=True)
    if args.suite != "report":
        source = asyncio.run(database.prepare())
        meta = {**machine.describe(), "database": source.description, "quick": args.quick}
        meta["postgres"] = asyncio.run(_postgres(source.dsn))
        plan = QUICK if args.quick else FULL
        steps_total = _count_steps(args.suite, plan, args.revisions) - profile.STEPS * skip_profile
        with tqdm(total=steps_total, unit="arm", file=sys.stderr) as bar:
            started = False

            def progress(label: str) -> None:
                # Called as each arm starts: the previous one is then done.
                nonlocal started
                if started:
                    bar.update(1)
                started = True
                bar.set_description(label)

            if args.suite in ("all", "db"):
                sizes, warmup, duration = plan["db"]
                pool = _rows(max(sizes) * 2)
                results = asyncio.run(db.suite(source.dsn, pool, sizes, warmup, duration, progress))
                _save(args.out / "db.json", meta, {"batch_sizes": sizes, "warmup_s": warmup, "duration_s": duration,
                                                   "rows_in_pool": len(pool), "seed": 42}, results)  # fmt: skip
            if args.suite in ("all", "http"):
                warmup, duration = plan["http"]
                arms = http.quick_arms() if args.quick else http.full_arms()
                results = http.suite(source.dsn, arms, warmup, duration, progress)
                _save(args.out / "http.json", meta, {"warmup_s": warmup, "duration_s": duration, "seed": 7,
                                                     "arms": [arm.__dict__ for arm in arms]}, results)  # fmt: skip
            if args.suite in ("all", "otlp"):
                warmup, duration = plan["http"]
                repeats = 3 if args.quick else otlp.STAGE_REPEATS
                # One worker: the server is then what limits both arms. With two, 8 keep-alive connections
                # split unevenly between the workers, and the busier one decides (seen in a run).
                workers = 1
                results = otlp.run(source.dsn, warmup, duration, progress, repeats, workers)
                _save(args.out / "otlp.json", meta, {"warmup_s": warmup, "duration_s": duration, "batch": otlp.BATCH,
                                                     "clients": otlp.CLIENTS, "stage_repeats": repeats,
                                                     "workers": workers}, results)  # fmt: skip
            if args.suite in ("all", "agents"):
                warmup, duration = plan["http"]
                rounds = 1 if args.quick else agents.ROUNDS
                results = agents.run(source.dsn, warmup, duration, progress, rounds)
                _save(args.out / "agents.json", meta, {"warmup_s": warmup, "duration_s": duration, "batch": agents.BATCH,
                                                       "clients": agents.CLIENTS, "workers": 1, "rounds": rounds,
                                                       "target": agents.TARGET}, results)  # fmt: skip
            if args.suite in ("all", "syslog"):
                warmup, duration = plan["http"]
                # A longer window than the http suite's: a TCP arm commits 16 batches of 1000 per cycle.
                duration = duration if args.quick else syslog.DURATION
                rounds = 1 if args.quick else syslog.ROUNDS
                results = syslog.run(source.dsn, warmup, duration, progress, rounds)
                _save(args.out / "syslog.json", meta, {"warmup_s": warmup, "duration_s": duration, "batch": syslog.BATCH,
                                                       "clients": syslog.CLIENTS, "workers": 1, "rounds": rounds,
                                                       "relp_window": syslog.WINDOW, "target": syslog.TARGET},
                      results)  # fmt: skip
            if args.suite in ("all", "aws"):
                results = aws.run(source.dsn, progress, args.quick)
                _save(args.out / "aws.json", meta, {"events": aws.EVENTS, "records": aws.RECORDS,
                                                    "cloudwatch_events_per_record": aws.CLOUDWATCH_EVENTS_PER_RECORD,
                                                    "clients": aws.CLIENTS}, results)  # fmt: skip
            if args.suite in ("all", "limits"):
                results = limits.run(progress)
                _save(args.out / "limits.json", meta, {"max_body_bytes": Settings(_env_file=None).max_body_bytes,  # type: ignore[call-arg]
                                                       "repeats": limits.REPEATS}, results)  # fmt: skip
            if args.suite in ("all", "scale"):
                sizes = plan["scale"]
                results = asyncio.run(scale.run(source.dsn, _rows(20_000), sizes, progress))
                _save(args.out / "scale.json", meta, {"sizes": sizes, "days": scale.DAYS, "batch": scale.BATCH,
                                                      "query_runs": scale.QUERY_RUNS, "count_runs": scale.COUNT_RUNS},
                      results)  # fmt: skip
            if args.suite in ("all", "archive"):
                sizes = plan["archive"]
                results = archive.run(
                    source.dsn, _rows(100_000 if not args.quick else 5_000), sizes, progress
                )
                _save(args.out / "archive.json", meta, {"sizes": sizes, "pool": 100_000 if not args.quick else 5_000,
                                                        "query_runs": archive.QUERY_RUNS,
                                                        "row_group_rows": archive.ROW_GROUP_ROWS}, results)  # fmt: skip
            if args.suite in ("all", "client"):
                calls, logs = plan["client"]
                results = client.run(source.dsn, progress, calls, logs)
                _save(args.out / "client.json", meta, {"calls": calls, "throughput_logs": logs}, results)
            if args.suite in ("all", "coldstart"):
                runs = 3 if args.quick else coldstart.RUNS
                results = coldstart.run(source.dsn, progress, runs)
                _save(args.out / "coldstart.json", meta, {"runs": runs, "event": "tests/events/apigw-http-v2.json",
                                                          "PYTHONDONTWRITEBYTECODE": 1}, results)  # fmt: skip
            if args.suite in ("all", "profile") and not skip_profile:
                warmup, duration = plan["http"]
                results = profile.run(source.dsn, warmup, duration, progress, 5 if args.quick else lone.RUNS)
                _save(args.out / "profile.json", meta, {"warmup_s": warmup, "duration_s": duration,
                                                        "rate_hz": profile.RATE, "workers": 1}, results)  # fmt: skip
            if args.suite in ("all", "alerts"):
                warmup, duration = plan["http"]
                results = alerts.run(source.dsn, _rows(20_000), plan["alerts"], warmup, duration, progress)
                _save(args.out / "alerts.json", meta, {"rows": plan["alerts"], "rules": alerts.RULES,
                                                       "passes": alerts.PASSES, "repeats": alerts.REPEATS,
                                                       "clients": alerts.CLIENTS, "batch": alerts.BATCH,
                                                       "warmup_s": warmup, "duration_s": duration}, results)  # fmt: skip
            if args.suite == "search":
                # Not part of "all": at 10 M logs it takes half an hour or more on its own.
                logs, pool_size = plan["search"]
                logs = args.logs or logs
                warmup, duration = plan["http"]
                results = search.run(source.dsn, _rows(pool_size), logs, warmup, duration, progress)
                _save(args.out / "search.json", meta, {"logs": logs, "pool": pool_size, "days": search.DAYS,
                                                       "archived_days": search.ARCHIVED_DAYS,
                                                       "archive_after_days": search.AFTER_DAYS,
                                                       "order_every": search.ORDER_EVERY, "runs": search.RUNS,
                                                       "min_runs": search.MIN_RUNS, "budget_s": search.BUDGET_S,
                                                       "query_timeout_s": search.QUERY_TIMEOUT_S,
                                                       "batch": search.BATCH, "clients": search.CLIENTS, "gzip": True,
                                                       "repeats": search.REPEATS, "tail_s": search.TAIL_S,
                                                       "warmup_s": warmup, "duration_s": duration,
                                                       "target_ms": search.TARGET_MS,
                                                       "target_postgres_cpu_ratio": search.TARGET_PG_RATIO},
                      results)  # fmt: skip
            if args.suite == "logql":
                # Not part of "all" either: seeding 10 M logs takes minutes of its own.
                logs, pool_size = plan["logql"]
                logs = args.logs or logs
                results = logql.run(source.dsn, _rows(pool_size), logs, progress)
                _save(args.out / "logql.json", meta, {"logs": logs, "days": logql.DAYS, "runs": logql.RUNS,
                                                      "batch": logql.BATCH, "rounds": logql.ROUNDS,
                                                      "ingest_pool": pool_size}, results)  # fmt: skip
            if args.suite == "steps":
                warmup, duration = plan["http"]
                results = steps.run(source.dsn, args.revisions, warmup, duration, progress)
                _save(args.out / "steps.json", meta, {"warmup_s": warmup, "duration_s": duration, "seed": 7,
                                                      "arms": [arm.__dict__ for arm in steps.ARMS]}, results)  # fmt: skip
            bar.update(1)
    if args.suite != "report" and not any((args.out / n).exists() for n in ("db.json", "http.json")):
        # Nothing the report is made of (e.g. only the profile suite, skipped): no report to render.
        print(f"no report: {args.out} holds no db.json or http.json")
        return 0
    written = report.render(args.out)
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


def _count_steps(suite: str, plan: dict[str, Any], revisions: list[str]) -> int:
    count = 0
    if suite in ("all", "db"):
        count += len(plan["db"][0]) * len(db.METHODS) + len(db.SCHEMAS)
    if suite in ("all", "http"):
        count += len(http.quick_arms() if plan is QUICK else http.full_arms()) + 1
    if suite in ("all", "limits"):
        count += len(limits.bodies(1024))
    if suite in ("all", "otlp"):
        count += 3  # the parse stages, then two arms
    if suite in ("all", "agents"):
        count += 3 * (1 if plan is QUICK else agents.ROUNDS)  # JSON, Loki, Elasticsearch bulk, per round
    if suite in ("all", "syslog"):
        count += 4 * (1 if plan is QUICK else syslog.ROUNDS)  # JSON, TCP (two MSG forms), RELP, per round
    if suite in ("all", "aws"):
        count += 5  # the handler, then four arms
    if suite in ("all", "scale"):
        count += 3 * len(plan["scale"])
    if suite in ("all", "archive"):
        count += 3 * len(plan["archive"])
    if suite in ("all", "profile"):
        count += profile.STEPS
    if suite in ("all", "coldstart"):
        count += 1
    if suite in ("all", "client"):
        count += 4
    if suite in ("all", "alerts"):
        count += 2 + 2 * alerts.REPEATS
    if suite == "search":
        count += search.steps(search.index_values())
    if suite == "logql":
        count += logql.STEPS
    if suite == "steps":
        count += steps.REPEATS * len(revisions) * (len(steps.ARMS) + 1)
    return count


def _rows(count: int) -> list[tuple[Any, ...]]:
    factory = LogFactory(42)
    rows: list[tuple[Any, ...]] = []
    while len(rows) < count:
        rows.extend(parse(body(factory.batch(1000)), 1000))
    return rows[:count]


async def _postgres(dsn: str) -> dict[str, Any]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return await machine.describe_postgres(conn)
    finally:
        await conn.close()


def _save(path: Path, meta: dict[str, Any], parameters: dict[str, Any], results: Any) -> None:
    path.write_text(json.dumps({"meta": meta, "parameters": parameters, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
