"""The writers against a real PostgreSQL: what is acknowledged is committed, and failures stay local."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from app.config import IngestMode, Settings
from app.database import Database
from app.errors import Busy, InvalidLogs, ServiceUnavailable
from app.intake import writer as writer_module
from app.intake.rows import LazyRows, parse, prepare
from app.intake.writer import Batch, GroupCommitWriter, Outcome, create
from app.storage import partitions
from tests.support import DB, log_entry, make_settings


def rows(n: int, **fields: Any) -> list[tuple[Any, ...]]:
    return parse(json.dumps({"logs": [log_entry(**fields)] * n}).encode(), 10_000)


def batch(n: int, **fields: Any) -> Batch:
    return Batch(rows(n, **fields), b"ok %d" % n)


def bad_row() -> tuple[Any, ...]:
    # Validation never lets this through; here it stands for any row PostgreSQL refuses.
    row = list(rows(1)[0])
    row[1] = "LOUD"  # level: not a value of the log_level enum
    return tuple(row)


async def with_writer(settings: Settings, mode: IngestMode, work: Any) -> Any:
    database = Database(settings)
    writer = create(settings, database, mode)
    try:
        return await work(writer)
    finally:
        await writer.close()
        await database.close()


@pytest.mark.parametrize("mode", list(IngestMode))
def test_concurrent_writes_are_all_committed(db: DB, settings: Settings, mode: IngestMode) -> None:
    async def work(writer: Any) -> None:
        await asyncio.gather(
            *(writer.write(batch(size, message=f"r{i}")) for i, size in enumerate([1, 10, 100] * 20))
        )

    asyncio.run(with_writer(settings, mode, work))
    assert db.count() == 111 * 20
    assert db.fetch("SELECT count(DISTINCT message) AS n FROM logs")[0]["n"] == 60


def test_group_commit_really_shares_transactions(db: DB, settings: Settings) -> None:
    async def work(writer: Any) -> None:
        await asyncio.gather(*(writer.write(batch(5, message=f"r{i}")) for i in range(50)))

    asyncio.run(with_writer(settings, IngestMode.group, work))
    # Rows COPYed in one transaction share its xmin; 50 requests through 2 writers need far fewer than 50.
    transactions = db.fetch("SELECT count(DISTINCT xmin::text) AS n FROM logs")[0]["n"]
    assert db.count() == 250
    assert transactions < 50


@pytest.mark.parametrize("mode", list(IngestMode))
def test_loki_rows_and_other_rows_in_one_group_are_both_written(
    db: DB, settings: Settings, mode: IngestMode
) -> None:
    """Rows of a Loki push carry three more columns (rows.LOKI_COLUMNS); batches of both widths may share a
    transaction, each row written with its own."""
    pushed = ('{"job": "varlogs", "service_name": "varlogs"}', '{"pod": "p-1"}', '{"message": "m", "x": 1}')

    async def work(writer: Any) -> None:
        await asyncio.gather(*(
            writer.write(Batch([(*row, *pushed) for row in rows(3, message=f"loki{i}")], b"ok"))
            if i % 2 else writer.write(batch(3, message=f"ours{i}"))
            for i in range(20)
        ))  # fmt: skip

    asyncio.run(with_writer(settings, mode, work))
    found = db.fetch("SELECT message, loki_labels::text AS l, loki_metadata::text AS m, loki_line FROM logs")
    assert len(found) == 60
    for row in found:
        kept = (row["l"], row["m"], row["loki_line"])
        if row["message"].startswith("loki"):
            assert kept == pushed
        else:
            assert kept == (None, None, None)


@pytest.mark.parametrize("mode", list(IngestMode))
def test_a_refused_request_fails_alone(db: DB, settings: Settings, mode: IngestMode) -> None:
    async def work(writer: Any) -> list[Any]:
        return await asyncio.gather(
            writer.write(batch(3, message="good-1")),
            writer.write(Batch(rows(2) + [bad_row()], b"")),
            writer.write(batch(4, message="good-2")),
            return_exceptions=True,
        )

    first, refused, last = asyncio.run(with_writer(settings, mode, work))
    assert first == Outcome(b"ok 3") and last == Outcome(b"ok 4")
    assert isinstance(refused, InvalidLogs)
    assert "PostgreSQL refused the batch" in refused.message
    assert db.count() == 7


def test_group_commit_turns_away_requests_when_the_queue_is_full(db: DB, database_url: str) -> None:
    settings = make_settings(database_url, writer_max_queued_rows=10, writer_concurrency=1)

    async def work(writer: GroupCommitWriter) -> list[Any]:
        # Nothing runs between these calls until the first await, so all four are queued at once.
        return await asyncio.gather(*(writer.write(batch(4)) for _ in range(4)), return_exceptions=True)

    results = asyncio.run(with_writer(settings, IngestMode.group, work))
    refused = [r for r in results if isinstance(r, Busy)]
    written = [r for r in results if isinstance(r, Outcome)]
    assert written and refused and len(written) + len(refused) == 4
    assert refused[0].status == 429 and "queue is full" in refused[0].message
    assert 1 <= int(refused[0].headers["Retry-After"]) <= 30
    assert db.count() == 4 * len(written)


def test_group_commit_lets_a_lone_oversized_request_through(db: DB, database_url: str) -> None:
    settings = make_settings(database_url, writer_max_queued_rows=10, writer_max_group_rows=10)
    asyncio.run(with_writer(settings, IngestMode.group, lambda writer: writer.write(batch(50))))
    assert db.count() == 50


def test_a_cancelled_waiter_leaves_its_group_and_the_writer_unharmed(db: DB, settings: Settings) -> None:
    async def work(writer: GroupCommitWriter) -> None:
        waiting = [asyncio.create_task(writer.write(batch(3, message=f"r{i}"))) for i in range(20)]
        await asyncio.sleep(0)  # all queued; the writers have not taken them yet
        waiting[5].cancel()  # as when a client goes away
        answers = await asyncio.gather(*waiting, return_exceptions=True)
        assert isinstance(answers[5], asyncio.CancelledError)
        assert [a for i, a in enumerate(answers) if i != 5] == [Outcome(b"ok 3")] * 19
        # The writer tasks go on serving.
        assert await writer.write(batch(2)) == Outcome(b"ok 2")

    asyncio.run(with_writer(settings, IngestMode.group, work))
    # Rows once queued are written whoever waits for them, as a request cut off mid-COPY would be.
    assert db.count() == 62


def test_close_finishes_queued_work_then_refuses_new_work(db: DB, settings: Settings) -> None:
    async def work(writer: GroupCommitWriter) -> None:
        pending = [asyncio.create_task(writer.write(batch(10))) for _ in range(20)]
        await asyncio.sleep(0)  # let them queue
        await writer.close()
        await asyncio.gather(*pending)
        with pytest.raises(ServiceUnavailable, match="shutting down"):
            await writer.write(batch(1))

    asyncio.run(with_writer(settings, IngestMode.group, work))
    assert db.count() == 200


def test_a_dropped_connection_is_replaced_once(db: DB, database_url: str) -> None:
    settings = make_settings(database_url, db_pool_min_size=1, db_pool_max_size=1)

    async def work(writer: Any) -> None:
        await writer.write(batch(1))
        pool = await writer.database.pool()
        async with pool.acquire() as conn:
            pid = conn.get_server_pid()
        # What happens to a frozen Lambda's idle connection: the server ends it while nobody listens.
        killer = await asyncpg.connect(database_url)
        await killer.execute("SELECT pg_terminate_backend($1)", pid)
        await killer.close()
        await writer.write(batch(2))
        async with pool.acquire() as conn:
            assert conn.get_server_pid() != pid

    asyncio.run(with_writer(settings, IngestMode.direct, work))
    assert db.count() == 3


class _Killer:
    """Ends a connection's server process for real (what a failover or an idle reaper does), and waits
    until PostgreSQL has let it go, so that the connection's next use fails every time."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def kill(self, conn: Any) -> None:
        pid = conn.get_server_pid()
        admin = await asyncpg.connect(self.url)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
            for _ in range(500):  # bounded: 5 s at most
                if not await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid):
                    return
                await asyncio.sleep(0.01)
        finally:
            await admin.close()


class _FaultyConnection:
    def __init__(self, conn: Any, step: str, killer: _Killer) -> None:
        self._conn, self._step, self._killer = conn, step, killer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    async def copy_records_to_table(self, *args: Any, **kwargs: Any) -> Any:
        if self._step == "copy":
            await self._killer.kill(self._conn)
        return await self._conn.copy_records_to_table(*args, **kwargs)

    def transaction(self) -> Any:
        transaction = self._conn.transaction()
        return (
            _KilledAtCommit(transaction, self._conn, self._killer) if self._step == "commit" else transaction
        )


class _KilledAtCommit:
    def __init__(self, transaction: Any, conn: Any, killer: _Killer) -> None:
        self._transaction, self._conn, self._killer = transaction, conn, killer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transaction, name)

    async def commit(self) -> None:
        await self._killer.kill(self._conn)
        await self._transaction.commit()


class _FaultyPool:
    """The real pool, with the connection killed at one step of the write: copy, commit or release."""

    def __init__(self, pool: Any, step: str, killer: _Killer) -> None:
        self._pool, self._step, self._killer = pool, step, killer
        self.release_failed = False

    async def acquire(self, timeout: float | None = None) -> Any:
        if self._step == "acquire":
            # Every connection of the pool is busy elsewhere: the acquire times out, as under overload.
            held = [await self._pool.acquire() for _ in range(self._pool.get_max_size())]
            try:
                return await self._pool.acquire(timeout=0.1)
            finally:
                for conn in held:
                    await self._pool.release(conn)
        return _FaultyConnection(await self._pool.acquire(timeout=timeout), self._step, self._killer)

    async def release(self, conn: Any) -> None:
        if self._step != "release":
            await self._pool.release(conn._conn)
            return
        # asyncpg's reset on release fails as it does when the server's goodbye arrives mid-reset: here
        # because the connection is still busy with a query, so the pool's reset raises and terminates it.
        busy = asyncio.ensure_future(conn._conn.execute("SELECT pg_sleep(1)"))
        await asyncio.sleep(0.05)
        try:
            await self._pool.release(conn._conn)
        except asyncpg.InterfaceError:
            self.release_failed = True
            raise
        finally:
            with contextlib.suppress(BaseException):
                await busy


@pytest.mark.parametrize("mode", list(IngestMode))
@pytest.mark.parametrize(
    ("step", "committed"), [("acquire", False), ("copy", False), ("commit", False), ("release", True)]
)
def test_a_connection_killed_at_each_step_answers_by_whether_it_committed(
    db: DB, database_url: str, mode: IngestMode, step: str, committed: bool
) -> None:
    settings = make_settings(database_url, db_pool_min_size=1, db_pool_max_size=2)

    async def work(writer: Any) -> Any:
        real = await writer.database.pool()
        await writer.database.partitions.ahead(real)  # today's partition exists: the write needs no other
        writer.database._pool = faulty = _FaultyPool(real, step, _Killer(database_url))
        try:
            return await writer.write(batch(5)), faulty.release_failed
        except ServiceUnavailable as exc:
            return exc, faulty.release_failed
        finally:
            writer.database._pool = real

    result, release_failed = asyncio.run(with_writer(settings, mode, work))
    assert release_failed == (step == "release")
    if committed:
        # The release after COMMIT failed; the answer is still the committed one.
        assert result == Outcome(b"ok 5")
        assert db.count() == 5
    else:
        assert isinstance(result, ServiceUnavailable), result
        assert result.status == 503 and int(result.headers["Retry-After"]) >= 1
        assert db.count() == 0


# --- lone batches, streamed: rows built while the chunks before them are written -------------------------


def lazy(entries: list[dict[str, Any]]) -> LazyRows:
    prepared = prepare(json.dumps({"logs": entries}).encode(), 10_000)
    assert isinstance(prepared, LazyRows)
    return prepared


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer_module, "STREAM_CHUNK_ROWS", 7)


@pytest.mark.parametrize("mode", list(IngestMode))
def test_a_lone_lazy_batch_is_written_in_chunks_of_one_transaction(
    db: DB, settings: Settings, mode: IngestMode, small_chunks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = []
    chunks = LazyRows.chunks

    def counted(self: LazyRows, size: int) -> Any:
        for chunk in chunks(self, size):
            built.append(len(chunk))
            yield chunk

    monkeypatch.setattr(LazyRows, "chunks", counted)
    entries = [log_entry(message=f"m{i}") for i in range(50)]
    outcome = asyncio.run(with_writer(settings, mode, lambda w: w.write(Batch(lazy(entries), b"ok"))))
    assert outcome == Outcome(b"ok")
    assert built == [7] * 7 + [1]
    stored = db.fetch("SELECT message, xmin::text AS tx FROM logs ORDER BY id")
    assert [r["message"] for r in stored] == [f"m{i}" for i in range(50)]
    assert len({r["tx"] for r in stored}) == 1  # eight COPYs, one transaction
    assert db.fetch("SELECT sum(n) AS n FROM log_counts")[0]["n"] == 50


@pytest.mark.parametrize("mode", list(IngestMode))
@pytest.mark.parametrize(
    ("bad", "field"),
    [({"level": "LOUD"}, "logs.45.level"), ({"metadata": nested(70)}, "logs.45.metadata")],
)
def test_an_entry_refused_in_a_late_chunk_leaves_nothing_written(
    db: DB, settings: Settings, mode: IngestMode, small_chunks: None, bad: dict[str, Any], field: str
) -> None:
    # The first chunks are already COPYed when entry 45 is built: they are rolled back, and the error
    # is the one parse() gives for the whole body.
    entries = [log_entry() for _ in range(50)]
    entries[45].update(bad)

    async def work(w: Any) -> Any:
        return await asyncio.gather(w.write(Batch(lazy(entries), b"ok")), return_exceptions=True)

    (refused,) = asyncio.run(with_writer(settings, mode, work))
    assert isinstance(refused, InvalidLogs)
    assert [e["field"] for e in refused.errors] == [field]
    assert db.count() == 0
    assert db.fetch("SELECT count(*) AS n FROM log_counts")[0]["n"] == 0


def test_lazy_batches_in_a_group_are_built_first_and_a_bad_one_fails_alone(
    db: DB, settings: Settings
) -> None:
    async def work(w: Any) -> list[Any]:
        return await asyncio.gather(
            w.write(Batch(lazy([log_entry(message="a")] * 3), b"a")),
            w.write(Batch(lazy([log_entry(level="LOUD")]), b"bad")),
            w.write(batch(4, message="b")),
            w.write(Batch(lazy([log_entry(message="c")] * 5), b"c")),
            return_exceptions=True,
        )

    a, bad, b, c = asyncio.run(with_writer(settings, IngestMode.group, work))
    assert (a, b, c) == (Outcome(b"a"), Outcome(b"ok 4"), Outcome(b"c"))
    assert isinstance(bad, InvalidLogs) and bad.errors[0]["field"] == "logs.0.level"
    assert db.count() == 12


def test_a_connection_killed_between_chunks_commits_nothing_and_answers_503(
    db: DB, database_url: str, small_chunks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(database_url, db_pool_min_size=1, db_pool_max_size=2)
    chunks = LazyRows.chunks

    def killing_chunks(self: LazyRows, size: int) -> Any:
        for n, chunk in enumerate(chunks(self, size)):
            if n == 3:
                # Chunks 0-2 are sent; the server ends the writer's connection, mid-transaction.
                db.fetch("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE xact_start IS NOT NULL"
                         " AND backend_type = 'client backend' AND pid <> pg_backend_pid()")  # fmt: skip
            yield chunk

    monkeypatch.setattr(LazyRows, "chunks", killing_chunks)

    async def work(w: Any) -> Any:
        return await asyncio.gather(w.write(Batch(lazy([log_entry()] * 50), b"ok")), return_exceptions=True)

    (failed,) = asyncio.run(with_writer(settings, IngestMode.direct, work))
    assert isinstance(failed, ServiceUnavailable) and failed.status == 503
    assert db.count() == 0


def test_a_later_chunk_for_a_day_without_partition_takes_the_whole_batch_path(
    db: DB, database_url: str, small_chunks: None
) -> None:
    # One pooled connection, as on Lambda: the missing partition cannot be made beside the open
    # transaction, so the batch is built whole, its partitions made first, then committed.
    settings = make_settings(database_url, db_pool_min_size=1, db_pool_max_size=1)
    days_ago = datetime.now(UTC) - timedelta(days=12)
    db.fetch(f"DROP TABLE IF EXISTS {partitions.PREFIX}{days_ago:%Y%m%d}")
    entries = [log_entry(message=f"m{i}") for i in range(30)]
    entries[20]["created_at"] = days_ago.timestamp()

    async def work(w: Any) -> Any:
        return await asyncio.wait_for(w.write(Batch(lazy(entries), b"ok")), 60)

    assert asyncio.run(with_writer(settings, IngestMode.direct, work)) == Outcome(b"ok")
    assert db.count() == 30
    assert len({r["tx"] for r in db.fetch("SELECT xmin::text AS tx FROM logs")}) == 1
