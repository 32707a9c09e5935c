"""The search suite (issue 29): find the needle in a week of logs, today, in a closed day and archived.

1. A week of `logs` generated logs (the generator's parsed rows cycled, re-timed evenly from the start of
   the day DAYS - 1 days ago until now): every message carries a request id that occurs once
   (`req-7f3a9c2e1b4d`), every ORDER_EVERY-th log an `order_id` that occurs once (`ord-88231777`) in its
   metadata. Closed days are COPYed straight into PostgreSQL; today's logs go through `POST /logs` of a real
   `python -m app` (with the search index on when there is one), as they would arrive.
2. Needles, one per place: a request id in a message and an order id in metadata (one log), and a rare
   phrase (`connection reset by quartermaster`), planted today, in a closed day that stays in PostgreSQL,
   and in the oldest day, which the archive pass (`python -m app archive`, ARCHIVE_AFTER_DAYS=AFTER_DAYS)
   then moves to Parquet with the day after it.
3. The index, when Settings has a SETTING field: one build (`python -m app index` when the app has that
   command, else one housekeeping pass) in a child process before the archive pass, then, with each server
   that has it on, a wait until its side tables stop growing; the CPU of both (child or server, and
   PostgreSQL, from /proc and rusage) per log, and its bytes per log (side tables in PostgreSQL, files beside
   the Parquet parts). Without the field only the plain scan ("off") is measured, and the JSON says so.
4. GET /logs against a real server per arm (index off, on): p50/p90 over at most RUNS repetitions after
   a warm-up (fewer once a query has taken BUDGET_S, never fewer than MIN_RUNS), the rows each answer
   holds, and whether every arm's answer is byte-identical to the first arm's.
5. Ingest with the index off and on (measured first, on an empty table), alternated REPEATS times: the http
   suite's load (pre-built gzip bodies of BATCH logs, CLIENTS connections) and its /proc accounting;
   PostgreSQL's and the server's CPU per stored log, over the load and TAIL_S after it (work an indexer
   does after the writes). Before each arm with the index on, the build runs once, so that a backfill of
   the logs the previous arm wrote with it off is not counted in this arm.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import typing
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import uvloop

from app.config import Settings
from app.intake.rows import COLUMNS
from app.storage import partitions
from bench import cpu, db, http
from bench.data import body

Row = tuple[Any, ...]
# The Settings field that turns the index on and off (the SEARCH_INDEX).
SETTING = "search_index"
DAYS = 7
ARCHIVED_DAYS = 2
# Days before today - AFTER_DAYS are archived: the oldest ARCHIVED_DAYS of the week.
AFTER_DAYS = DAYS - 1 - ARCHIVED_DAYS
ORDER_EVERY = 3
COPY_BATCH = 50_000
HTTP_BATCH = 1000
HTTP_SENDERS = 4
RUNS = 5
MIN_RUNS = 3
BUDGET_S = 30.0
# A needle may take minutes without the index: the server is given room for it (both arms alike).
QUERY_TIMEOUT_S = 600
# The ingest comparison.
BATCH = 1000
CLIENTS = 8
REPEATS = 2
TAIL_S = 1.0
INGEST_BODIES = 16
# An index built in the background by the server: polled until its size holds for SETTLE_STEADY polls.
SETTLE_POLL_S = 2.0
SETTLE_STEADY = 2
SETTLE_MAX_S = 300.0
PLACES = ("today", "closed", "archived")
PHRASE = "connection reset by {word}"
PHRASE_WORDS = {"today": "quartermaster", "closed": "harbormaster", "archived": "stationmaster"}
TARGET_MS = 300.0
TARGET_PG_RATIO = 1.05
# Tables the app had before the index; any other table (or materialized view) is counted as the index's.
APP_TABLES = ("logs", "idempotency_keys", "log_counts", "alert_rules", "archive_parts", "bulk_ids",
              "schema_migrations")  # fmt: skip
ROOT = Path(__file__).parent.parent

# Ids that occur once: bijections of the log's number k (odd multipliers: one-to-one modulo 2**48 and 10**8).
# The filler numbers its logs from 0; needles take numbers from NEEDLE_BASE up, which no filler log reaches.
NEEDLE_BASE = 10**8 - 100
_MESSAGE, _METADATA, _TRACE = COLUMNS.index("message"), COLUMNS.index("metadata"), COLUMNS.index("trace_id")


def request_id(k: int) -> str:
    return f"req-{(k * 0x9E3779B97F4B + 0x7F3A9C2E1B4D) % 2**48:012x}"


def order_id(k: int) -> str:
    return f"ord-{(k * 7_654_321 + 88_231_777) % 10**8:08d}"


def index_values() -> list[tuple[str, str]] | None:
    """(arm, SEARCH_INDEX value) per arm, the plain scan first; None when Settings has no such field. A
    choice of designs (an Enum or Literal field) gives an arm per design."""
    field = Settings.model_fields.get(SETTING)
    if field is None:
        return None
    annotation = field.annotation
    options = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is not typing.Literal and len(options) == 1:
        annotation = options[0]  # X | None
    if annotation is bool:
        return [("off", "false"), ("on", "true")]
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        values = [str(member.value) for member in annotation]
    elif typing.get_origin(annotation) is typing.Literal:
        values = [str(value) for value in typing.get_args(annotation)]
    else:
        return [("off", "off"), ("on", "on")]
    plain = [v for v in values if v.lower() in ("off", "none", "false", "scan", "0", "")]
    return [(v, v) for v in plain[:1] + [v for v in values if v not in plain[:1]]]


# --- the week -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Week:
    """`logs` logs timed evenly from the start of the day DAYS - 1 days ago until `now`."""

    now: datetime
    logs: int

    @property
    def today(self) -> date:
        return self.now.date()

    @cached_property
    def days(self) -> list[date]:
        return [self.today - timedelta(days=n) for n in range(DAYS - 1, -1, -1)]

    @cached_property
    def start(self) -> datetime:
        return _midnight(self.days[0])

    @cached_property
    def step(self) -> timedelta:
        return (self.now - self.start) / self.logs

    def at(self, k: int) -> datetime:
        return self.start + self.step * k

    def first_at(self, moment: datetime) -> int:
        """The number of the first log timed at or after `moment` (`logs` if none is)."""
        k = min(self.logs, max(0, math.floor((moment - self.start) / self.step) - 1))
        while k < self.logs and self.at(k) < moment:
            k += 1
        return k

    @property
    def first_today(self) -> int:
        return self.first_at(_midnight(self.today))

    @property
    def archived_days(self) -> list[date]:
        return self.days[:ARCHIVED_DAYS]

    def place_day(self, place: str) -> date:
        return {"today": self.today, "closed": self.today - timedelta(days=2), "archived": self.days[0]}[
            place
        ]

    def needle_time(self, place: str) -> datetime:
        if place == "today":
            return _midnight(self.today) + (self.now - _midnight(self.today)) / 2
        return _midnight(self.place_day(place)) + timedelta(hours=12)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def log(template: Row, k: int, at: datetime, with_order: bool | None = None) -> Row:
    """The pool's row `template` as log number k: its own time, trace id (ten logs each) and ids."""
    row = list(template)
    row[0] = at
    row[_TRACE] = f"{k // 10:032x}"
    row[_MESSAGE] = f"{row[_MESSAGE]} ({request_id(k)})"
    if with_order if with_order is not None else k % ORDER_EVERY == 0:
        metadata = row[_METADATA]
        extra = f'"order_id":"{order_id(k)}"'
        row[_METADATA] = f"{metadata[:-1]},{extra}}}" if metadata and metadata != "{}" else f"{{{extra}}}"
    return tuple(row)


@dataclass(frozen=True)
class Needle:
    place: str
    token: str  # a request id in a message
    order: str  # an order_id in metadata
    phrase: str  # a rare phrase in another message
    rows: tuple[Row, Row]


def needles(week: Week, pool: Sequence[Row]) -> dict[str, Needle]:
    out = {}
    for j, place in enumerate(PLACES):
        at = week.needle_time(place)
        k, kp = NEEDLE_BASE + j, NEEDLE_BASE + len(PLACES) + j
        phrase = PHRASE.format(word=PHRASE_WORDS[place])
        carrier = list(log(pool[j], kp, at + timedelta(seconds=1), with_order=False))
        carrier[_MESSAGE] = f"upstream call failed: {phrase} ({request_id(kp)})"
        rows = (log(pool[j], k, at, with_order=True), tuple(carrier))
        out[place] = Needle(place, request_id(k), order_id(k), phrase, rows)
    return out


def entry(row: Row) -> dict[str, Any]:
    """A row as a client sends it to POST /logs."""
    out: dict[str, Any] = {}
    for name, value in zip(COLUMNS, row, strict=True):
        if value is None:
            continue
        if name == "created_at":
            value = value.isoformat()
        elif name == "metadata":
            value = json.loads(value)
        elif name == "duration_ms":
            value = float(value)
        out[name] = value
    return out


# --- filling ------------------------------------------------------------------------------------------


async def _reset(dsn: str, week: Week) -> None:
    conn = await db.connect(dsn)
    try:
        await conn.execute("TRUNCATE logs, log_counts, idempotency_keys, bulk_ids")
        for name in await _side_tables(conn):
            await conn.execute(f'TRUNCATE "{name}"')
        for day in week.days:
            # A day archived by an earlier run has a detached table, or none, and a part: start it afresh.
            await conn.execute(f"DROP TABLE IF EXISTS {partitions.name(day)}")
            await conn.execute("DELETE FROM archive_parts WHERE day = $1", day)
            await partitions.create(conn, day)
        for n in range(1, partitions.AHEAD_DAYS + 1):
            await partitions.create(conn, week.today + timedelta(days=n))
    finally:
        await conn.close()


async def _copy_closed(dsn: str, week: Week, pool: Sequence[Row], found: Sequence[Needle]) -> int:
    """COPY every log before today, and the needles of closed and archived days; the rows written."""
    conns = [await db.connect(dsn) for _ in range(2)]
    stop = week.first_today

    def batch(begin: int) -> list[Row]:
        return [log(pool[k % len(pool)], k, week.at(k)) for k in range(begin, min(begin + COPY_BATCH, stop))]

    try:
        extra = [row for needle in found if needle.place != "today" for row in needle.rows]
        await conns[0].copy_records_to_table("logs", records=extra, columns=COLUMNS)
        for begin in range(0, stop, 2 * COPY_BATCH):
            starts = [b for b in (begin, begin + COPY_BATCH) if b < stop]
            await asyncio.gather(
                *(
                    c.copy_records_to_table("logs", records=batch(b), columns=COLUMNS)
                    for c, b in zip(conns, starts)
                )
            )
    finally:
        for conn in conns:
            await conn.close()
    return stop + len(extra)


async def _post_today(port: int, week: Week, pool: Sequence[Row], needle: Needle) -> int:
    """POST today's logs (and today's needles) to the server, HTTP_BATCH a request; the logs acknowledged."""
    ks = iter(range(week.first_today, week.logs))
    first = list(needle.rows)
    acknowledged = 0

    def next_body() -> tuple[bytes, int] | None:
        rows = [first.pop() for _ in range(len(first))]
        for k in ks:
            rows.append(log(pool[k % len(pool)], k, week.at(k)))
            if len(rows) == HTTP_BATCH:
                break
        return (body([entry(r) for r in rows]), len(rows)) if rows else None

    async def sender(client: httpx.AsyncClient) -> None:
        nonlocal acknowledged
        while (item := next_body()) is not None:
            raw, count = item
            response = await client.post("/logs", content=raw, headers={"Content-Type": "application/json"})
            if response.status_code != 200 or response.json()["saved"] != count:
                raise db.RowCountMismatch(
                    f"search: POST /logs answered {response.status_code} {response.text[:300]}"
                )
            acknowledged += count

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
        await asyncio.gather(*(sender(client) for _ in range(HTTP_SENDERS)))
    return acknowledged


# --- the index's footprint ----------------------------------------------------------------------------


async def _side_tables(conn: asyncpg.Connection) -> list[str]:
    """Tables that are neither the app's own nor a day of logs: the index's side tables, if any."""
    rows = await conn.fetch(
        """
        SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'm') AND n.nspname = current_schema()
          AND c.relname <> ALL($1::text[]) AND c.relname NOT LIKE $2
        ORDER BY c.relname
        """,
        list(APP_TABLES),
        f"{partitions.PREFIX}%",
    )
    return [r["relname"] for r in rows]


async def footprint(dsn: str) -> dict[str, Any]:
    """Bytes of the index's side tables (with their indexes and TOAST), and of indexes on the days of logs
    beyond their primary key, BRIN and trace_id btree (an index built on closed partitions)."""
    conn = await asyncpg.connect(dsn)
    try:
        tables = {name: await conn.fetchval("SELECT pg_total_relation_size(to_regclass($1))", f'"{name}"')
                  for name in await _side_tables(conn)}  # fmt: skip
        extra_indexes = await conn.fetchval(
            """
            SELECT coalesce(sum(pg_relation_size(i.indexrelid)), 0) FROM pg_index i
            JOIN pg_inherits h ON h.inhrelid = i.indrelid AND h.inhparent = 'logs'::regclass
            WHERE i.indexrelid NOT IN (SELECT inhrelid FROM pg_inherits WHERE inhparent IN
                                       (SELECT indexrelid FROM pg_index WHERE indrelid = 'logs'::regclass))
            """
        )
        return {
            "side_tables": tables,
            "side_bytes": sum(tables.values()),
            "partition_index_bytes": int(extra_indexes),
        }
    finally:
        await conn.close()


def archive_files(directory: Path) -> dict[str, int]:
    """Bytes under the archive directory: the Parquet parts, and everything else (the index's files)."""
    parts = other = 0
    for path in directory.rglob("*"):
        if path.is_file():
            if path.name.startswith("part-") and path.suffix == ".parquet":
                parts += path.stat().st_size
            else:
                other += path.stat().st_size
    return {"parquet_bytes": parts, "other_bytes": other}


# --- child processes ----------------------------------------------------------------------------------

_HOUSEKEEPING = """
import asyncio, json
from app.config import Settings
from app.database import Database
from app.storage import maintenance

async def main():
    database = Database(Settings())
    try:
        print(json.dumps(await maintenance.run_once(database), default=str))
    finally:
        await database.close()

asyncio.run(main())
"""


def app_commands() -> set[str]:
    """The subcommands `python -m app` has (serve, retention, archive, …)."""
    done = subprocess.run([sys.executable, "-m", "app", "--help"], cwd=ROOT, capture_output=True, text=True,
                          check=True, timeout=120)  # fmt: skip
    start = done.stdout.find("{")
    return set(done.stdout[start + 1 : done.stdout.find("}", start)].split(",")) if start >= 0 else set()


def _child(
    dsn: str, postmaster: int | None, argv: list[str], env: dict[str, str | None], label: str
) -> dict[str, Any]:
    """Run a command of the app in a child process; its wall time, its own CPU (rusage of reaped children)
    and PostgreSQL's CPU over the same time."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "LOGSAVE_", "ARCHIVE_"))}
    environ.update(DATABASE_URL=dsn, RETENTION_DAYS="0", LOG_LEVEL="WARNING")
    environ.update({k: v for k, v in env.items() if v is not None})
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    pg_before = cpu.tree_seconds(postmaster) if postmaster else 0.0
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *argv], cwd=ROOT, env=environ, capture_output=True, text=True,
                          check=False)  # fmt: skip
    seconds = time.perf_counter() - started
    pg = cpu.tree_seconds(postmaster) - pg_before if postmaster else None
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr[-2000:]}")
    own = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"command": label, "seconds": round(seconds, 2), "cpu_s": round(own, 3),
            "postgres_cpu_s": None if pg is None else round(pg, 3), "output": done.stdout.strip()[-2000:]}  # fmt: skip


@contextmanager
def _env(**values: str | None) -> Iterator[None]:
    # bench.http.server hands this process's environment to the server it starts; None unsets a variable.
    saved = {name: os.environ.get(name) for name in values}
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _server_env(value: str | None, archive_url: str | None) -> dict[str, str | None]:
    env: dict[str, str | None] = {"ARCHIVE_URL": archive_url, "ARCHIVE_AFTER_DAYS": None, "RETENTION_DAYS": "0",
                                  "QUERY_TIMEOUT": str(QUERY_TIMEOUT_S), "DB_COMMAND_TIMEOUT": str(QUERY_TIMEOUT_S)}  # fmt: skip
    env[SETTING.upper()] = value
    return env


# --- queries ------------------------------------------------------------------------------------------


# Per arm: a token, a metadata value and a phrase per place, then a quoted phrase, a common word, two substrings.
QUERIES_PER_ARM = 3 * len(PLACES) + 4


@dataclass(frozen=True)
class Search:
    name: str
    place: str | None
    kind: str  # token, metadata, phrase, quoted phrase, common word, substring
    params: dict[str, str]
    expect: int | None  # rows the answer must hold (None: any)
    target: bool = False  # held to TARGET_MS
    scanned: int | None = None  # rows in range, for a scan's rows/s


def searches(week: Week, found: dict[str, Needle], rows_pg: int, rows_all: int) -> list[Search]:
    out = []
    for place in PLACES:
        n = found[place]
        out += [
            Search(f"token needle, {place}", place, "token", {"q": n.token}, 1, True),
            Search(f"metadata needle, {place}", place, "metadata", {"meta.order_id": n.order}, 1, True),
            Search(f"phrase, {place}", place, "phrase", {"q": n.phrase}, 1, True),
        ]
    hour_ago = (week.now - timedelta(hours=1)).isoformat()
    fragment = found["closed"].token[5:14]  # inside the id's hex: not a whole token
    first_pg = _midnight(week.days[ARCHIVED_DAYS]).isoformat()
    out += [
        Search(
            "quoted phrase, closed", "closed", "quoted phrase", {"q": f'"{found["closed"].phrase}"'}, None
        ),
        Search("common word, last hour", None, "common word", {"q": "declined", "since": hour_ago}, None),
        Search(
            "substring, PostgreSQL days",
            None,
            "substring",
            {"q": fragment, "since": first_pg},
            None,
            scanned=rows_pg,
        ),
        Search("substring, whole week", None, "substring", {"q": fragment}, None, scanned=rows_all),
    ]
    return out


def _measure(client: httpx.Client, search: Search) -> dict[str, Any]:
    times: list[float] = []
    digest = matches = None
    spent = 0.0
    for run in range(RUNS + 1):
        started = time.perf_counter()
        response = client.get("/logs", params=search.params)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"search: {search.name} answered {response.status_code} {response.text[:300]}")
        if run == 0:  # the warm-up
            matches = len(response.json()["logs"])
            digest = hashlib.sha256(response.content).hexdigest()
            if search.expect is not None and matches != search.expect:
                raise db.RowCountMismatch(f"search: {search.name} found {matches} logs, not {search.expect}")
            continue
        times.append(elapsed * 1000)
        spent += elapsed
        if len(times) >= MIN_RUNS and spent >= BUDGET_S:
            break
    p50 = db.percentile(times, 50)
    result = {"name": search.name, "place": search.place, "kind": search.kind, "params": search.params,
              "runs": len(times), "p50_ms": round(p50, 3), "p90_ms": round(db.percentile(times, 90), 3),
              "matches": matches, "digest": digest, "target": search.target}  # fmt: skip
    if search.scanned is not None:
        result["rows_in_range"] = search.scanned
        result["rows_per_s"] = round(search.scanned / (p50 / 1000))
    return result


def _settle(dsn: str, process: psutil.Process, postmaster: int | None) -> dict[str, Any]:
    """Wait until the index's footprint holds still (a server that builds it in the background)."""
    server0 = cpu.tree_seconds(process.pid)
    pg0 = cpu.tree_seconds(postmaster) if postmaster else 0.0
    started = time.perf_counter()
    last, steady = None, 0
    while steady < SETTLE_STEADY and time.perf_counter() - started < SETTLE_MAX_S:
        size = asyncio.run(footprint(dsn))
        now = (size["side_bytes"], size["partition_index_bytes"])
        steady = steady + 1 if now == last else 0
        last = now
        if steady < SETTLE_STEADY:
            time.sleep(SETTLE_POLL_S)
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "server_cpu_s": round(cpu.tree_seconds(process.pid) - server0, 3),
        "postgres_cpu_s": round(cpu.tree_seconds(postmaster) - pg0, 3) if postmaster else None,
        "steady": steady >= SETTLE_STEADY,
    }


def _query_arm(dsn: str, arm: str, value: str | None, archive_url: str, todo: Sequence[Search],
               progress: Callable[[str], None]) -> dict[str, Any]:  # fmt: skip
    result: dict[str, Any] = {"arm": arm, "value": value}
    with _env(**_server_env(value, archive_url)), http.server(dsn, "group") as (process, port):
        if arm != "off":
            progress(f"search: {arm}: waiting for the index to settle")
            result["settle"] = _settle(dsn, process, asyncio.run(http.postmaster(dsn)))
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=QUERY_TIMEOUT_S + 30) as client:
            result["queries"] = []
            for search in todo:
                progress(f"search: {arm}: {search.name}")
                result["queries"].append(_measure(client, search))
    return result


# --- ingest -------------------------------------------------------------------------------------------


async def _count(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT count(*) FROM logs")
    finally:
        await conn.close()


def _ingest_arm(dsn: str, arm: str, value: str | None, bodies: Sequence[bytes], warmup: float,
                duration: float) -> dict[str, Any]:  # fmt: skip
    with _env(**_server_env(value, None)), http.server(dsn, "group") as (process, port):
        requests = http.build_requests(port, bodies, gzip=True)
        before = asyncio.run(_count(dsn))
        with http.Sampler(process, asyncio.run(http.postmaster(dsn))) as sampler:
            warm, measured, seconds = uvloop.run(http.load(port, requests, CLIENTS, warmup, duration))
            time.sleep(TAIL_S)
        stored = asyncio.run(_count(dsn)) - before
    acknowledged = warm.acknowledged + measured.acknowledged
    if stored != acknowledged:
        raise db.RowCountMismatch(f"search ingest {arm}: {acknowledged} acknowledged, {stored} stored")
    return {
        "arm": arm, "value": value, "logs": acknowledged, "logs_per_s": round(measured.acknowledged / seconds, 1),
        "server_cpu_us_per_log": round(sampler.server_seconds / max(1, acknowledged) * 1e6, 2),
        "postgres_cpu_us_per_log": round(sampler.postgres_seconds / max(1, acknowledged) * 1e6, 2),
        "server_cpu": sampler.server_cpu, "postgres_cpu": sampler.postgres_cpu, "client_cpu": sampler.client_cpu,
        "steal_cpu": sampler.steal,
    }  # fmt: skip


def _ingest(dsn: str, week: Week, pool: Sequence[Row], arms: Sequence[tuple[str, str | None]], warmup: float,
            duration: float, progress: Callable[[str], None],
            build: Callable[[str], dict[str, Any]]) -> dict[str, Any]:  # fmt: skip
    # Logs like the week's (a request id each, some an order id), numbered after it, timed now.
    k0 = week.logs
    bodies = [
        body(
            [
                entry(log(pool[(k0 + k) % len(pool)], k0 + k, week.now))
                for k in range(b * BATCH, (b + 1) * BATCH)
            ]
        )
        for b in range(INGEST_BODIES)
    ]
    results = []
    for repeat in range(REPEATS):
        for arm, value in arms:
            progress(f"search: ingest, index {arm} ({repeat + 1}/{REPEATS})")
            # Logs written with the index off may leave work for the next server that has it on (a backfill
            # at its start-up housekeeping): done here first, so that an arm measures its own writes only.
            before = build(value) if value is not None and arm != arms[0][0] else None
            results.append(_ingest_arm(dsn, arm, value, bodies, warmup, duration))
            if before is not None:
                results[-1]["build_before_s"] = before["seconds"]
    per_arm = {
        arm: {
            key: statistics.median(r[key] for r in results if r["arm"] == arm)
            for key in ("postgres_cpu_us_per_log", "server_cpu_us_per_log", "logs_per_s")
        }
        for arm, _ in arms
    }
    baseline = per_arm[arms[0][0]]
    ratios = {
        arm: round(m["postgres_cpu_us_per_log"] / baseline["postgres_cpu_us_per_log"], 3)
        for arm, m in per_arm.items()
        if arm != arms[0][0]
    }
    return {"runs": results, "medians": per_arm, "postgres_cpu_ratio": ratios}


def steps(values: Sequence[tuple[str, str]] | None) -> int:
    """The progress labels `run` shows, for the bar."""
    arms = len(values) if values else 1
    on = arms - 1
    # Ingest per arm; COPY, POST, VACUUM, the archive pass; the build; per arm its queries (and the wait
    # for an index).
    return (REPEATS * arms if on else 0) + 4 + (1 if on else 0) + arms * QUERIES_PER_ARM + on


# --- the suite ----------------------------------------------------------------------------------------


async def _rows_where(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        return {
            "postgres": await conn.fetchval("SELECT count(*) FROM logs"),
            "postgres_bytes": int(await conn.fetchval(
                "SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits"
                " WHERE inhparent = 'logs'::regclass")),
            "archived": await conn.fetchval(
                "SELECT coalesce(sum(rows), 0)::bigint FROM archive_parts WHERE state = 'archived'"),
        }  # fmt: skip
    finally:
        await conn.close()


async def _vacuum(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("VACUUM ANALYZE logs")
    finally:
        await conn.close()


def run(dsn: str, pool: Sequence[Row], logs: int, warmup: float, duration: float,
        progress: Callable[[str], None]) -> dict[str, Any]:  # fmt: skip
    if logs + INGEST_BODIES * BATCH >= NEEDLE_BASE:
        raise ValueError(
            f"search: at most {NEEDLE_BASE - INGEST_BODIES * BATCH:,} logs (ids must stay unique)"
        )
    values = index_values()
    arms: list[tuple[str, str | None]] = values or [("off", None)]
    building = [(arm, value) for arm, value in arms[1:]]
    week = Week(datetime.now(UTC), logs)
    found = needles(week, pool)
    postmaster = asyncio.run(http.postmaster(dsn))
    directory = Path(tempfile.mkdtemp(prefix="logsave-search-bench-"))
    # The archive pass and today's server run with the (first) index on, as a deployment that has one would.
    on = building[0][1] if building else None
    result: dict[str, Any] = {
        # The machine is shared: its 1/5/15-minute load averages when the suite started (and, below, ended).
        "load_average": {"start": [round(x, 2) for x in os.getloadavg()]},
        "setting": {"name": SETTING.upper(), "present": values is not None, "arms": [a for a, _ in arms]},
    }
    if len(building) > 1:
        result["setting"]["built_with"] = (f"today's logs, the build and the archive pass ran with {SETTING.upper()}="
                                           f"{on}; later arms built what they need in the server, if anything")  # fmt: skip
    if values is None:
        result["setting"]["note"] = (f"Settings has no {SETTING} field: only the plain scan (index off) was "
                                     "measured; no index cost, no ingest comparison")  # fmt: skip
    command, label = ["-c", _HOUSEKEEPING], "one housekeeping pass (app.storage.maintenance.run_once)"
    if building and "index" in app_commands():
        command, label = ["-m", "app", "index"], "python -m app index"

    def build(value: str) -> dict[str, Any]:
        return _child(dsn, postmaster, command, {SETTING.upper(): value}, label)

    try:
        asyncio.run(_reset(dsn, week))
        if building:
            # First, on an empty table: what the index costs ingest, the arms alternated.
            result["ingest"] = _ingest(dsn, week, pool, arms, warmup, duration, progress, build)
            asyncio.run(_reset(dsn, week))
        progress(f"search: COPY {week.first_today:,} logs into the closed days")
        started = time.perf_counter()
        copied = asyncio.run(_copy_closed(dsn, week, pool, list(found.values())))
        copy_seconds = time.perf_counter() - started
        progress(f"search: POST {week.logs - week.first_today:,} logs of today")
        with _env(**_server_env(on, None)), http.server(dsn, "group") as (_, port):
            started = time.perf_counter()
            posted = asyncio.run(_post_today(port, week, pool, found["today"]))
            post_seconds = time.perf_counter() - started
        stored = asyncio.run(_count(dsn))
        if stored != copied + posted:
            raise db.RowCountMismatch(f"search: {copied} copied + {posted} posted, {stored} stored")
        progress("search: VACUUM ANALYZE")
        asyncio.run(_vacuum(dsn))
        result["load"] = {"logs": stored, "copied": copied, "copy_rows_per_s": round(copied / copy_seconds),
                          "posted": posted, "post_logs_per_s": round(posted / post_seconds)}  # fmt: skip
        closed_rows = copied
        if building:
            progress("search: building the index")
            before = asyncio.run(footprint(dsn))
            built = build(on)
            built["rows"] = closed_rows
            built["cpu_us_per_log"] = round(built["cpu_s"] / closed_rows * 1e6, 2)
            if built["postgres_cpu_s"] is not None:
                built["postgres_cpu_us_per_log"] = round(built["postgres_cpu_s"] / closed_rows * 1e6, 2)
            built["footprint_before"], built["footprint_after"] = before, asyncio.run(footprint(dsn))
            result["build"] = built
        progress(f"search: archiving the oldest {ARCHIVED_DAYS} days")
        result["archive_pass"] = _child(dsn, postmaster, ["-m", "app", "archive"], {
            "ARCHIVE_URL": str(directory), "ARCHIVE_AFTER_DAYS": str(AFTER_DAYS), SETTING.upper(): on}, "python -m app archive")  # fmt: skip
        where = asyncio.run(_rows_where(dsn))
        # The logs of the archived days, and the archived place's two needles.
        expected = week.first_at(_midnight(week.days[ARCHIVED_DAYS])) + 2
        if where["archived"] != expected or where["postgres"] + where["archived"] != stored:
            raise db.RowCountMismatch(f"search: {expected} logs in the archived days, the pass says {where}")
        files = archive_files(directory)
        result["corpus"] = {
            "logs": stored, "postgres_logs": where["postgres"], "archived_logs": where["archived"],
            "postgres_bytes_per_log": round(where["postgres_bytes"] / where["postgres"], 1),
            "parquet_bytes_per_log": round(files["parquet_bytes"] / where["archived"], 1),
            "days": [str(d) for d in week.days], "archived_days": [str(d) for d in week.archived_days],
            "needles": {p: {"token": n.token, "order_id": n.order, "phrase": n.phrase, "at": n.rows[0][0].isoformat()}
                        for p, n in found.items()},
        }  # fmt: skip
        todo = searches(week, found, where["postgres"], stored)
        result["arms"] = []
        for arm, value in arms:
            result["arms"].append(_query_arm(dsn, arm, value, str(directory), todo, progress))
        if building:
            size, files = asyncio.run(footprint(dsn)), archive_files(directory)
            settle = result["arms"][1].get("settle", {})
            build_cpu = result["build"]["cpu_s"] + settle.get("server_cpu_s", 0.0)
            result["index"] = {
                "postgres_bytes": size["side_bytes"] + size["partition_index_bytes"],
                "postgres_bytes_per_log": round((size["side_bytes"] + size["partition_index_bytes"]) / where["postgres"], 1),
                "file_bytes": files["other_bytes"],
                "file_bytes_per_log": round(files["other_bytes"] / where["archived"], 1) if files["other_bytes"] else None,
                "side_tables": size["side_tables"],
                "build_cpu_us_per_log": round(build_cpu / closed_rows * 1e6, 2),
            }  # fmt: skip
            if not size["side_bytes"] and not size["partition_index_bytes"] and not files["other_bytes"]:
                result["index"]["note"] = "no side table, partition index or archive file found"
        base = {q["name"]: q["digest"] for q in result["arms"][0]["queries"]}
        result["identical"] = {
            arm["arm"]: all(q["digest"] == base[q["name"]] for q in arm["queries"])
            for arm in result["arms"][1:]
        }
        result["load_average"]["end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        asyncio.run(_cleanup(dsn, week))
        shutil.rmtree(directory, ignore_errors=True)
    return result


async def _cleanup(dsn: str, week: Week) -> None:
    conn = await db.connect(dsn)
    try:
        await conn.execute("TRUNCATE logs, log_counts, idempotency_keys, bulk_ids")
        for name in await _side_tables(conn):
            await conn.execute(f'TRUNCATE "{name}"')
        for day in week.archived_days:
            await conn.execute(f"DROP TABLE IF EXISTS {partitions.name(day)}")
            await conn.execute("DELETE FROM archive_parts WHERE day = $1", day)
    finally:
        await conn.close()
