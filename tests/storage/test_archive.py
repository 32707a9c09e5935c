"""The cold-storage pass against a real PostgreSQL and real Parquet files: what it moves, that a crash between
any two of its steps loses and doubles nothing, retention of archived days, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pyarrow.parquet as pq
import pytest

from app.storage import archive, cold, partitions, summary
from tests.support import DB, run

ROOT = Path(__file__).parents[2]
# Days far in the past, so the pass (given TODAY) touches only the partitions these tests make.
TODAY = date(2020, 1, 20)
AFTER = 5
DAYS = [date(2020, 1, 10), date(2020, 1, 12)]
KEPT = date(2020, 1, 18)  # not closed long enough: stays in PostgreSQL
ROWS_PER_DAY = 2_500
# The CLI archives by today's date: a day well past ARCHIVE_AFTER_DAYS=399, made for those tests alone.
CLI_DAY = datetime.now(UTC).date() - timedelta(days=400)


def make_day(db: DB, day: date, rows: int = ROWS_PER_DAY, *, first: int = 1) -> None:
    """A partition of `day` with varied rows: every column, nulls, nested metadata, several services."""
    name = partitions.name(day)
    if not db.fetch("SELECT to_regclass($1) IS NOT NULL AS x", name)[0]["x"]:
        db.fetch(
            f"CREATE TABLE {name} PARTITION OF logs FOR VALUES FROM ('{day}T00:00:00Z')"
            f" TO ('{day + timedelta(days=1)}T00:00:00Z')"
        )
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    db.fetch(
        """
        INSERT INTO logs (created_at, level, log_type, service, environment, service_version, trace_id, user_id,
            session_id, error_type, message, stack_trace, path, method, action_type, function_name, file_path,
            duration_ms, deleted, metadata)
        SELECT $1::timestamptz + ((g % 5000) * interval '17 seconds') + (g % 1000) * interval '1 microsecond',
            (ARRAY['TRACE','DEBUG','INFO','WARN','ERROR','FATAL'])[1 + g % 6]::log_level,
            (ARRAY['BACKEND','FRONTEND','WORKER'])[1 + g % 3]::log_type,
            (ARRAY['checkout','search','auth','billing'])[1 + g % 4],
            (ARRAY['production','staging','development'])[1 + g % 3]::log_environment,
            'v1.' || (g % 7), CASE WHEN g % 5 = 0 THEN 'trace' || (g / 10) END,
            CASE WHEN g % 3 = 0 THEN 'user' || (g % 50) END, 'sess' || (g % 20),
            CASE WHEN g % 6 = 4 THEN 'TimeoutError' END, 'message ' || g || ' Ünïcode ' || md5(g::text) || CASE WHEN g % 13 = 0 THEN ' 50%_off' ELSE '' END,
            CASE WHEN g % 11 = 0 THEN E'Traceback\n  line ' || g END, '/api/' || (g % 9),
            (ARRAY['GET','POST',NULL])[1 + g % 3]::http_method, 'act', 'fn' || (g % 4), 'file.py',
            CASE WHEN g % 2 = 0 THEN (g % 5000) / 7.0 END, g % 97 = 0,
            CASE WHEN g % 4 = 0 THEN NULL
                 ELSE jsonb_build_object('status', 200 + g % 4 * 100, 'ok', g % 2 = 0, 'region', 'eu-' || (g % 3),
                                         'http', jsonb_build_object('status', 500 + g % 3), 'ratio', g / 4.0) END
        FROM generate_series($2::int, $3::int) AS g
        """,
        start,
        first,
        first + rows - 1,
    )
    # LogQL's rollup as the writer would have kept it (rows inserted by SQL bypass it).
    db.fetch(summary.REBUILD_MINUTES, start, start + timedelta(days=1))


@pytest.fixture
def fresh(db: DB, tmp_path: Path) -> Iterator[archive.Store]:
    yield make_store(db, tmp_path)
    drop_days(db)


def drop_days(db: DB) -> None:
    """What these tests made, gone: other modules' retention must not find these old days."""
    db.fetch("TRUNCATE archive_parts")
    for day in [*DAYS, KEPT, CLI_DAY]:
        db.fetch(f"DROP TABLE IF EXISTS {partitions.name(day)}")


def make_store(db: DB, tmp_path: Path) -> archive.Store:
    """The test days made afresh in PostgreSQL, nothing archived yet, and an empty store."""
    db.fetch("TRUNCATE archive_parts")
    for day in [*DAYS, KEPT]:
        db.fetch(f"DROP TABLE IF EXISTS {partitions.name(day)}")
    for day in [*DAYS, KEPT]:
        make_day(db, day)
    return archive.Store.open(str(tmp_path / "archive"))


async def _pass(url: str, store: archive.Store, hook: Any = None, **kwargs: Any) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(url)
    try:
        return await archive.run(conn, store, AFTER, today=TODAY, hook=hook, **kwargs)
    finally:
        await conn.close()


def archive_pass(db: DB, store: archive.Store, hook: Any = None, **kwargs: Any) -> list[dict[str, Any]]:
    return run(_pass(db.url, store, hook, **kwargs))


def all_rows(db: DB, store: archive.Store) -> list[tuple[Any, ...]]:
    """Every row a reader sees: PostgreSQL's, plus the parts the read rule takes from files, sorted by id."""
    hot = [tuple(r) for r in db.fetch("SELECT id, created_at, service, message FROM logs")]

    async def paths() -> list[str]:
        conn = await asyncpg.connect(db.url)
        try:
            return await cold.readable(conn)
        finally:
            await conn.close()

    archived = []
    for path in run(paths()):
        table = pq.read_table(
            store.fs.open_input_file(store.full(path)), columns=["id", "created_at", "service", "message"]
        )
        archived += [tuple(row.values()) for row in table.to_pylist()]
    return sorted(hot + archived)


def test_a_pass_moves_closed_days_to_parquet_and_a_second_is_a_no_op(db: DB, fresh: archive.Store) -> None:
    before = all_rows(db, fresh)
    full_before = db.fetch(f"SELECT * FROM {partitions.name(DAYS[0])} ORDER BY service, created_at, id")
    assert [m["partition"] for m in archive_pass(db, fresh, dry_run=True)] == [
        partitions.name(d) for d in DAYS
    ]
    assert not db.fetch("SELECT * FROM archive_parts")  # a dry run writes nothing

    moved = archive_pass(db, fresh)
    assert [(m["day"], m["rows"]) for m in moved] == [(str(d), ROWS_PER_DAY) for d in DAYS]
    existing = run(_existing(db.url))
    assert not set(DAYS) & set(existing) and KEPT in existing
    parts = db.fetch("SELECT day, state, rows, bytes, path FROM archive_parts ORDER BY day")
    assert [(p["day"], p["state"], p["rows"]) for p in parts] == [(d, "archived", ROWS_PER_DAY) for d in DAYS]
    assert parts[0]["path"] == f"day={DAYS[0]}/part-0000.parquet"
    assert all_rows(db, fresh) == before

    # Every column as it was, sorted by service, created_at, id; metadata as its JSON text.
    parquet = pq.ParquetFile(fresh.fs.open_input_file(fresh.full(parts[0]["path"])))
    assert parquet.metadata.row_group(0).column(0).compression == "ZSTD"
    table = parquet.read().to_pylist()
    assert len(table) == len(full_before)
    for got, want in zip(table, full_before, strict=True):
        want = dict(want)
        want["level"], want["log_type"] = str(want["level"]), str(want["log_type"])
        want["environment"] = str(want["environment"])
        want["method"] = None if want["method"] is None else str(want["method"])
        assert got == {**want, "metadata": got["metadata"]}
        assert (got["metadata"] is None) == (want["metadata"] is None)
    assert parquet.metadata.num_rows == parts[0]["rows"] and parts[0]["bytes"] > 0

    assert archive_pass(db, fresh) == []
    assert all_rows(db, fresh) == before


async def _existing(url: str) -> dict[date, str]:
    conn = await asyncpg.connect(url)
    try:
        return await partitions.existing(conn)
    finally:
        await conn.close()


class Crash(Exception):
    pass


STEPS = ["recorded", "written", "verified", "detached", "dropping"]


@pytest.mark.parametrize("step", STEPS)
def test_a_pass_that_dies_after_any_step_loses_and_doubles_nothing(
    db: DB, fresh: archive.Store, step: str
) -> None:
    before = all_rows(db, fresh)

    def die(at: str) -> None:
        if at == step:
            raise Crash(at)

    with pytest.raises(Crash):
        archive_pass(db, fresh, die)
    assert all_rows(db, fresh) == before  # in between: every row once, from PostgreSQL or a file
    archive_pass(db, fresh)
    assert all_rows(db, fresh) == before
    states = db.fetch("SELECT day, part, state FROM archive_parts ORDER BY day")
    assert [tuple(s) for s in states] == [(d, 0, "archived") for d in DAYS]
    files = sorted(info.path for info in fresh.fs.get_file_info(_selector(fresh)) if info.is_file)
    # A half-written file was deleted (with its search filters, app/search/).
    written = [archive.file_name(d, 0) for d in DAYS]
    assert files == sorted(fresh.full(f) for f in [*written, *map(archive.search_file, written)])
    assert archive_pass(db, fresh) == []


def test_a_day_is_written_as_several_files_each_a_later_slice_of_time(
    db: DB, fresh: archive.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive, "ROW_GROUP_ROWS", 300)
    monkeypatch.setattr(archive, "FILE_ROWS", 1000)  # a new file once one holds 1000 rows: 4 groups a file
    before = all_rows(db, fresh)
    archive_pass(db, fresh)
    assert all_rows(db, fresh) == before
    part = db.fetch("SELECT path, files, rows, row_groups, bytes FROM archive_parts WHERE day = $1", DAYS[0])[
        0
    ]
    assert (part["files"], part["rows"], part["row_groups"]) == (3, ROWS_PER_DAY, 9)
    files = archive.part_files(part["path"], part["files"])
    assert files[1:] == [f"day={DAYS[0]}/part-0000.1.parquet", f"day={DAYS[0]}/part-0000.2.parquet"]
    edges = []
    for relative in files:
        table = pq.read_table(fresh.fs.open_input_file(fresh.full(relative)), columns=["created_at", "id"])
        keys = sorted(
            zip(table.column("created_at").to_pylist(), table.column("id").to_pylist(), strict=True)
        )
        edges.append((keys[0], keys[-1]))
    groups = [pq.ParquetFile(fresh.fs.open_input_file(fresh.full(f))).metadata.num_row_groups for f in files]
    assert groups == [4, 4, 1]
    assert all(edges[k][1] < edges[k + 1][0] for k in range(2))  # each file after the one before
    assert part["bytes"] == sum(fresh.fs.get_file_info(fresh.full(f)).size for f in files)


def test_a_pass_that_fails_between_files_leaves_none_of_them(
    db: DB, fresh: archive.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive, "ROW_GROUP_ROWS", 300)
    monkeypatch.setattr(archive, "FILE_ROWS", 1000)
    before = all_rows(db, fresh)
    opened = archive._Files.next_file

    def third_fails(self: Any) -> None:
        if self.count == 2:
            raise Crash("disk full")
        opened(self)

    monkeypatch.setattr(archive._Files, "next_file", third_fails)
    with pytest.raises(Crash):
        archive_pass(db, fresh)
    listed = [info.base_name for info in fresh.fs.get_file_info(_selector(fresh)) if info.is_file]
    # Two files of a 'writing' part, each with its search filters (app/search/).
    assert sorted(listed) == [
        "part-0000.1.parquet",
        "part-0000.1.parquet.search",
        "part-0000.parquet",
        "part-0000.parquet.search",
    ]
    assert all_rows(db, fresh) == before
    monkeypatch.setattr(archive._Files, "next_file", opened)
    archive_pass(db, fresh)
    assert all_rows(db, fresh) == before
    listed = sorted(info.path for info in fresh.fs.get_file_info(_selector(fresh)) if info.is_file)
    recorded = db.fetch("SELECT path, files FROM archive_parts WHERE state = 'archived' ORDER BY day")
    assert listed == sorted(
        fresh.full(g)
        for r in recorded
        for f in archive.part_files(r["path"], r["files"])
        for g in (f, archive.search_file(f))
    )


def _selector(store: archive.Store) -> Any:
    import pyarrow.fs as pafs

    return pafs.FileSelector(store.root, recursive=True)


def test_rows_that_arrive_while_a_day_is_archived_are_kept(db: DB, fresh: archive.Store) -> None:
    """A late log for the day lands after the export's snapshot: the part is discarded and done again."""
    day = DAYS[0]

    arrived = []

    def late(at: str) -> None:
        if at == "verified" and not arrived:
            make_day(db, day, 3, first=900_001)
            arrived.append(at)

    archive_pass(db, fresh, late)
    before = all_rows(db, fresh)
    assert len(before) == 3 * ROWS_PER_DAY + 3
    assert (
        db.fetch("SELECT count(*) AS n FROM logs WHERE created_at::date = $1", day)[0]["n"]
        == ROWS_PER_DAY + 3
    )
    archive_pass(db, fresh)
    assert all_rows(db, fresh) == before
    assert (
        db.fetch("SELECT sum(rows) AS n FROM archive_parts WHERE day = $1", day)[0]["n"] == ROWS_PER_DAY + 3
    )

    # Later still: rows for a day already archived become its next part.
    make_day(db, day, 2, first=950_001)
    archive_pass(db, fresh)
    parts = db.fetch("SELECT part, rows, state FROM archive_parts WHERE day = $1 ORDER BY part", day)
    assert [tuple(p) for p in parts][-1] == (parts[-1]["part"], 2, "archived")
    assert len(all_rows(db, fresh)) == len(before) + 2


def test_retention_removes_archived_days_with_their_files_and_counts(db: DB, fresh: archive.Store) -> None:
    archive_pass(db, fresh)
    for day in DAYS:
        db.fetch(
            "INSERT INTO log_counts (hour, service, level, shard, n) VALUES ($1, 'old', 'INFO', 0, 7)",
            datetime(day.year, day.month, day.day, 3, tzinfo=UTC),
        )

    async def expire() -> list[str]:
        conn = await asyncpg.connect(db.url)
        try:
            return await archive.expire(conn, fresh, (TODAY - DAYS[1]).days, today=TODAY)  # DAYS[0] only
        finally:
            await conn.close()

    assert run(expire()) == [str(DAYS[0])]
    assert [r["day"] for r in db.fetch("SELECT day FROM archive_parts")] == [DAYS[1]]
    assert fresh.days() == [DAYS[1]]
    hours = [r["hour"].date() for r in db.fetch("SELECT hour FROM log_counts WHERE service = 'old'")]
    assert hours == [DAYS[1]]
    assert run(expire()) == []


@pytest.fixture
def cli_day(db: DB) -> Iterator[date]:
    drop_days(db)
    yield CLI_DAY
    drop_days(db)


def test_cli_archives_and_dry_run_only_lists(
    db: DB, database_url: str, tmp_path: Path, cli_day: date
) -> None:
    day = cli_day
    make_day(db, day, 50)
    env = {**os.environ, "DATABASE_URL": database_url, "ARCHIVE_URL": f"file://{tmp_path}/a",
           "ARCHIVE_AFTER_DAYS": "399", "RETENTION_DAYS": "0"}  # fmt: skip

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "app", "archive", *args]
        return subprocess.run(
            command, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )

    dry = cli("--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would move: 1" in dry.stdout and str(day) in dry.stdout
    assert db.fetch("SELECT to_regclass($1) IS NOT NULL AS x", partitions.name(day))[0]["x"]
    done = cli()
    assert done.returncode == 0, done.stderr
    assert "moved: 1" in done.stdout and f"{day}: 50 rows -> day={day}/part-0000.parquet" in done.stdout
    assert (tmp_path / "a" / f"day={day}" / "part-0000.parquet").is_file()
    assert not db.fetch("SELECT to_regclass($1) IS NOT NULL AS x", partitions.name(day))[0]["x"]
    db.fetch("TRUNCATE archive_parts")
    env["ARCHIVE_URL"] = ""
    missing = cli()
    assert missing.returncode == 2 and "ARCHIVE_URL" in missing.stderr


def test_housekeeping_runs_the_pass_under_its_lock_and_lambda_skips_it(
    db: DB, fresh: archive.Store, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.database import Database
    from app.storage import maintenance
    from tests.support import make_settings

    # ARCHIVE_AFTER_DAYS reaching back to 2020-01-15: only this module's DAYS are old enough.
    after = (datetime.now(UTC).date() - date(2020, 1, 15)).days
    settings = make_settings(database_url, archive_url=fresh.root, archive_after_days=after)

    async def once(hold_lock: bool) -> dict[str, Any]:
        database = Database(settings)
        other = await asyncpg.connect(database_url)
        try:
            if hold_lock:  # another server's housekeeping in progress
                await other.execute("SELECT pg_advisory_lock($1)", maintenance.LOCK_KEY)
            return await maintenance.run_once(database)
        finally:
            await other.close()
            await database.close()

    assert run(once(hold_lock=True)) == {"skipped": "another process is doing housekeeping"}
    assert not db.fetch("SELECT * FROM archive_parts")
    monkeypatch.setattr(archive, "available", lambda **_: False)  # the Lambda package
    skipped = run(once(hold_lock=False))
    assert skipped["archive_skipped"].startswith("ARCHIVE_URL is set but pyarrow")
    assert not db.fetch("SELECT * FROM archive_parts")
    monkeypatch.undo()
    done = run(once(hold_lock=False))
    assert [m["day"] for m in done["archived"]] == [str(d) for d in DAYS]
    assert [r["state"] for r in db.fetch("SELECT state FROM archive_parts")] == ["archived", "archived"]


def test_a_pass_killed_while_writing_is_redone_by_the_next(
    db: DB, database_url: str, tmp_path: Path, cli_day: date
) -> None:
    """The real process, SIGKILLed once its part is recorded as being written (no hook: the CLI as cron runs it)."""
    day = cli_day
    make_day(db, day, 60_000)
    store = archive.Store.open(str(tmp_path / "a"))
    before = all_rows(db, store)
    env = {**os.environ, "DATABASE_URL": database_url, "ARCHIVE_URL": store.root, "ARCHIVE_AFTER_DAYS": "399",
           "RETENTION_DAYS": "0"}  # fmt: skip
    command = [sys.executable, "-m", "app", "archive"]
    child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):  # until the pass is between recording the part and finishing the file
            if db.fetch("SELECT 1 FROM archive_parts WHERE state = 'writing'") or child.poll() is not None:
                break
            time.sleep(0.05)
    finally:
        child.kill()
        child.wait(30)
    state = [r["state"] for r in db.fetch("SELECT state FROM archive_parts")]
    assert state in (["writing"], ["verified"], ["archived"])  # killed somewhere along the way
    assert all_rows(db, store) == before
    done = subprocess.run(
        command, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert [r["state"] for r in db.fetch("SELECT state FROM archive_parts")] == ["archived"]
    assert all_rows(db, store) == before
