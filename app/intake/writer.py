"""The writer: batches -> one COPY inside a transaction -> commit. A request is answered only after its
rows are committed.

The one rule of every write: committed -> the request's answer; not committed -> 503 + Retry-After (or 422
when PostgreSQL refused the data). Once COMMIT has returned nothing that happens to the connection after
it (release, reset, close) changes the answer; an error during COMMIT itself is an unknown outcome and is
answered 503, which an Idempotency-Key makes safe to retry (app/intake/idempotency.py).

Two designs share one `write(batch)` interface, chosen by INGEST_MODE:

* `DirectWriter` ("direct"): each request runs its own COPY transaction, as the product description does.
* `GroupCommitWriter` ("group"): requests queue their rows; `writer_concurrency` tasks each take everything
  queued (up to `writer_max_group_rows`) the moment they are free, COPY it in one transaction, and answer
  every request in it at commit. No timer: an idle server writes a lone request at once, a busy one writes
  bigger groups. The queue is bounded; when it is full a request gets 429 + Retry-After instead of waiting.

A batch that arrives decoded but not yet built (rows.LazyRows, from POST /logs) and is written alone is
streamed (`stream`): its rows are built a chunk at a time while PostgreSQL writes the chunk before, all in
one transaction that is rolled back unless every entry is valid. In a group it is built first (`_built`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, Protocol

import asyncpg

from app import metrics
from app.config import IngestMode, Settings
from app.database import Database
from app.errors import Busy, IngestError, InvalidLogs, ServiceUnavailable
from app.intake import documents, idempotency
from app.intake.rows import COLUMNS, LOKI_COLUMNS, LazyRows, Unsettled
from app.search import build
from app.storage import partitions, summary

log = logging.getLogger(__name__)

Row = tuple[Any, ...]

# Errors where PostgreSQL itself refused the data: 422, and in a group, the culprit is found and fails alone.
_REFUSED = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)
# Every other error from the driver or the socket means "not committed, try again": 503 + Retry-After.
# InternalClientError is among them: asyncpg raises it when a connection dies mid-protocol.
_UNAVAILABLE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)
# The connection was found dead before anything was sent (e.g. a Lambda container thawed after the
# server closed its idle connection): safe to retry once on a fresh connection.
_STALE = (
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    ConnectionResetError,
    BrokenPipeError,
)


@dataclass(frozen=True)
class Batch:
    """One request's rows, the answer it gets once they are committed, and its idempotency claim; or, for
    rows with document ids (app/intake/documents.py), the answer built once their ids are claimed."""

    rows: Sequence[Row] | LazyRows
    response: bytes
    claim: idempotency.Claim | None = None
    # Not with `claim`: the answer an Idempotency-Key stores is `response`, known before the ids are.
    documents: documents.Documents | None = None


@dataclass(frozen=True)
class Outcome:
    response: bytes
    replayed: bool = False


class Writer(Protocol):
    async def write(self, batch: Batch) -> Outcome: ...

    async def close(self) -> None: ...


def create(settings: Settings, database: Database, mode: IngestMode | None = None) -> Writer:
    mode = mode or settings.ingest_mode
    if mode is IngestMode.direct:
        return DirectWriter(database, settings)
    return GroupCommitWriter(database, settings)


class _Outage:
    """Since when PostgreSQL has been failing: Retry-After grows with the outage (1 s, then up to 30 s)."""

    def __init__(self) -> None:
        self.since: float | None = None

    def failed(self) -> int:
        now = time.monotonic()
        if self.since is None:
            self.since = now
        return min(30, 1 + int(now - self.since))

    def recovered(self) -> None:
        self.since = None


outage = _Outage()


@contextlib.contextmanager
def database_errors() -> Iterator[None]:
    """Turn driver errors into the domain's: 422 when PostgreSQL refused the data, else 503."""
    try:
        yield
    except _REFUSED as exc:
        metrics.DB_ERRORS.labels(kind="refused").inc()
        raise InvalidLogs(
            [{"field": "logs", "message": f"PostgreSQL refused the batch: {exc}", "type": "db_refused"}]
        ) from exc
    except _UNAVAILABLE as exc:
        metrics.DB_ERRORS.labels(kind=type(exc).__name__).inc()
        raise ServiceUnavailable(
            f"database unavailable: {type(exc).__name__}: {exc}".rstrip(": "), retry_after=outage.failed()
        ) from exc
    outage.recovered()


async def commit(database: Database, batches: Sequence[Batch]) -> list[Outcome | IngestError]:
    """Claim the batches' keys and COPY their rows in one transaction; an outcome per batch once committed.

    Raises when nothing was committed. Every batch's rows must be built (not LazyRows: see `stream`).
    """
    pool = await database.pool()
    # Partitions for the rows' days, made before the COPY's transaction (never under its locks).
    if any(batch.rows for batch in batches):
        await database.partitions.ensure(pool, _days([row for batch in batches for row in batch.rows]))
    async with _transaction(database) as conn:
        outcomes, rows = await _claim(conn, batches, database.settings.idempotency_ttl)
        if rows:
            await _copy(conn, rows, batches)
            await summary.add(conn, summary.counts(rows), _blocks(database, rows))
    _committed(len(rows))
    return outcomes


async def _copy(conn: asyncpg.Connection, rows: Sequence[Row], batches: Sequence[Batch]) -> None:
    """COPY the rows: those of Loki pushes (LOKI_COLUMNS wide) in a COPY of their own. A batch's rows are all
    of one width, so one look per batch tells whether any is wide, and other front doors' rows are sent as
    they always were."""
    if not any(b.rows and len(b.rows[0]) != len(COLUMNS) for b in batches):
        await conn.copy_records_to_table("logs", records=rows, columns=COLUMNS)
        return
    narrow = [row for row in rows if len(row) == len(COLUMNS)]
    wide = [row for row in rows if len(row) != len(COLUMNS)]
    if narrow:
        await conn.copy_records_to_table("logs", records=narrow, columns=COLUMNS)
    await conn.copy_records_to_table("logs", records=wide, columns=LOKI_COLUMNS)


async def stream(database: Database, batch: Batch) -> Outcome | IngestError:
    """`commit` for one batch whose rows are LazyRows: each chunk of rows is built while PostgreSQL
    writes the chunk before it (one COPY per chunk, in one transaction), so a lone batch's parse overlaps
    its COPY. An entry the chunks cannot settle, or a chunk for a day whose partition this process has not
    seen, rolls the transaction back; the batch is then built whole and committed as `commit` does, or
    refused with the errors `parse` names."""
    lazy = batch.rows
    assert isinstance(lazy, LazyRows)
    pool = await database.pool()
    try:
        chunks = lazy.chunks(STREAM_CHUNK_ROWS)
        first = next(chunks)
        # The first chunk's partitions are made before the transaction, as `commit` does for all rows.
        await database.partitions.ensure(pool, _days(first))
        async with _transaction(database) as conn:
            (outcome,), claimed = await _claim(conn, [batch], database.settings.idempotency_ttl)
            blocks = build.Blocks() if database.settings.search_index else None
            counted = (
                await _copy_chunks(database, conn, first, chunks, blocks) if claimed else summary.Tally()
            )
            written = counted.total()
            if written:
                await summary.add(conn, counted, blocks)
    except (Unsettled, _Unwritable):
        try:
            rows = lazy.build()
        except IngestError as exc:
            return exc
        (outcome,) = await commit(database, [replace(batch, rows=rows)])
        return outcome
    _committed(written)
    return outcome


# Rows per COPY when a batch is streamed: small enough that PostgreSQL starts early, big enough that
# each COPY's own cost (a round trip, a statement) stays small beside its rows.
STREAM_CHUNK_ROWS = 250


class _Unwritable(Exception):
    """A streamed chunk has a day with no partition known: it cannot be made inside the transaction
    (the pool may have no other connection to make it with), so the batch takes `commit`'s path."""


def _days(rows: Sequence[Row]) -> list[date]:
    created = [row[0] for row in rows]
    return partitions.days_between(min(created), max(created))


async def _copy_chunks(
    database: Database,
    conn: asyncpg.Connection,
    first: list[Row],
    rest: Iterator[list[Row]],
    blocks: build.Blocks | None,
) -> summary.Tally:
    """COPY every chunk; the summary's counts of what was written, and its search blocks when `blocks` is
    given (a chunk's rows are let go once sent)."""
    counted = summary.Tally()
    copying: asyncio.Task[str] | None = None
    try:
        for chunk in itertools.chain([first], rest):  # builds the next chunk while `copying` is written
            if copying is not None:
                await copying
            if not database.partitions.has(_days(chunk)):
                raise _Unwritable
            copying = asyncio.create_task(conn.copy_records_to_table("logs", records=chunk, columns=COLUMNS))
            counted.update(summary.counts(chunk))
            if blocks is not None:
                blocks.add(chunk)
            # Let the COPY send its rows before this task goes back to building the next chunk.
            await asyncio.sleep(0)
        if copying is not None:
            await copying
    except BaseException:
        if copying is not None and not copying.done():
            copying.cancel()
            with contextlib.suppress(BaseException):
                await copying
        raise
    return counted


def _blocks(database: Database, rows: Sequence[Row]) -> build.Blocks | None:
    """The search index's blocks of these rows (app/search/build.py), unless SEARCH_INDEX is off."""
    if not database.settings.search_index:
        return None
    blocks = build.Blocks()
    blocks.add(rows)
    return blocks


def _committed(rows: int) -> None:
    if rows:
        metrics.COMMIT_ROWS.observe(rows)
        metrics.LOGS_SAVED.inc(rows)


@contextlib.asynccontextmanager
async def _transaction(database: Database) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection in a transaction, committed when the block ends (rolled back if it raises),
    then released. Retries once if the connection was found stale at BEGIN."""
    pool = await database.pool()
    for attempt in (1, 2):
        conn = await pool.acquire(timeout=database.settings.db_acquire_timeout)
        try:
            transaction = conn.transaction()
            try:
                await transaction.start()
            except _STALE:
                if attempt == 2:
                    raise
                log.warning("stale database connection, retrying once on a new one")
                continue
            try:
                yield conn
            except BaseException:
                # Rollback on a broken connection fails too; the original error is the one to report.
                with contextlib.suppress(Exception):
                    await transaction.rollback()
                raise
            await transaction.commit()
            return
        finally:
            await _release(pool, conn)


async def _release(pool: asyncpg.Pool, conn: asyncpg.Connection) -> None:
    # After COMMIT the answer is decided: a connection that dies now (its reset fails) is only replaced.
    # Before COMMIT the error that got us here is the one to report. Either way this never raises.
    try:
        await pool.release(conn)
    except Exception as exc:  # noqa: BLE001 - asyncpg has already terminated the connection
        log.info("a connection could not be returned to the pool: %s: %s", type(exc).__name__, exc)


async def _claim(
    conn: asyncpg.Connection, batches: Sequence[Batch], ttl: float
) -> tuple[list[Outcome | IngestError], Sequence[Row]]:
    """The outcome each batch will have if the transaction commits, and the rows to COPY for them."""
    claims = sorted((b.claim for b in batches if b.claim), key=lambda claim: claim.key)
    won: set[str] = set()
    stored: dict[str, asyncpg.Record] = {}
    if claims:
        keys = [claim.key for claim in claims]
        by_key = {b.claim.key: b.response for b in batches if b.claim}
        records = await conn.fetch(
            idempotency.CLAIM, keys, [c.fingerprint for c in claims], [by_key[k] for k in keys], ttl
        )
        won = {record["key"] for record in records}
        lost = [key for key in keys if key not in won]
        if lost:
            stored = {record["key"]: record for record in await conn.fetch(idempotency.LOOKUP, lost)}
    only = batches[0]
    if len(batches) == 1 and only.documents is None and (only.claim is None or only.claim.key in won):
        return [Outcome(only.response)], only.rows
    # Document ids are claimed after every Idempotency-Key (one lock order for all transactions), and only
    # for the batches that are written.
    writing = [b.documents for b in batches if b.documents and (b.claim is None or b.claim.key in won)]
    refused = iter(await documents.claim(conn, writing, ttl)) if writing else iter(())
    outcomes: list[Outcome | IngestError] = []
    rows: list[Row] = []
    for batch in batches:
        if batch.claim is None or batch.claim.key in won:
            if batch.documents is None:
                rows.extend(batch.rows)
                outcomes.append(Outcome(batch.response))
            else:
                taken = next(refused)
                rows.extend(row for position, row in enumerate(batch.rows) if position not in taken)
                outcomes.append(Outcome(batch.documents.answer(taken)))
            continue
        try:
            outcomes.append(Outcome(idempotency.replay(batch.claim, stored.get(batch.claim.key)), True))
        except IngestError as exc:
            outcomes.append(exc)
    return outcomes, rows


class DirectWriter:
    def __init__(self, database: Database, settings: Settings) -> None:
        self.database = database

    async def write(self, batch: Batch) -> Outcome:
        with database_errors():
            if isinstance(batch.rows, LazyRows):
                outcome = await stream(self.database, batch)
            else:
                (outcome,) = await commit(self.database, [batch])
        if isinstance(outcome, IngestError):
            raise outcome
        return outcome

    async def close(self) -> None:
        pass


@dataclass
class _Pending:
    batch: Batch
    done: asyncio.Future[Outcome] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class GroupCommitWriter:
    def __init__(self, database: Database, settings: Settings) -> None:
        self.database = database
        self.concurrency = settings.writer_concurrency
        self.max_group_rows = settings.writer_max_group_rows
        self.max_queued_rows = settings.writer_max_queued_rows
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        self._wakeup: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._busy = 0  # writer tasks in the middle of a COPY
        # Rows committed per second by all writer tasks together (moving average): sets Retry-After on 429.
        self._drain_rate = 0.0

    async def write(self, batch: Batch) -> Outcome:
        if self._closing:
            raise ServiceUnavailable("server is shutting down")
        size = len(batch.rows)
        # One request larger than the whole queue is still let in when the queue is empty.
        if self._queued_rows and self._queued_rows + size > self.max_queued_rows:
            raise Busy(
                f"write queue is full ({self._queued_rows} logs waiting); retry after the Retry-After seconds",
                retry_after=self._retry_after(),
            )
        if not self._tasks:
            self._start()
        pending = _Pending(batch)
        self._queue.append(pending)
        self._queued_rows += size
        metrics.QUEUE_ROWS.set(self._queued_rows)
        assert self._wakeup is not None
        self._wakeup.set()
        # Cancelling this request (its client went away) cancels only its own future, never the COPY in a
        # writer task that carries other requests' rows: `_settle` passes over a future already done.
        return await pending.done

    def _retry_after(self) -> int:
        """Seconds until the rows queued now are written, at the recent drain rate: 1 to 30."""
        if self._drain_rate <= 0:
            return 1
        return max(1, min(30, math.ceil(self._queued_rows / self._drain_rate)))

    def _start(self) -> None:
        self._wakeup = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._run(), name=f"group-writer-{i}") for i in range(self.concurrency)
        ]

    def _take_group(self) -> list[_Pending]:
        group = [self._queue.popleft()]
        size = len(group[0].batch.rows)
        while self._queue and size + len(self._queue[0].batch.rows) <= self.max_group_rows:
            group.append(self._queue.popleft())
            size += len(group[-1].batch.rows)
        self._queued_rows -= size
        metrics.QUEUE_ROWS.set(self._queued_rows)
        return group

    async def _run(self) -> None:
        assert self._wakeup is not None
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            group = self._take_group()
            self._busy += 1
            started = time.monotonic()
            try:
                await self._commit(group)
            finally:
                self._busy -= 1
            rows = sum(len(pending.batch.rows) for pending in group)
            rate = rows / max(time.monotonic() - started, 1e-3) * self.concurrency
            self._drain_rate = rate if not self._drain_rate else 0.8 * self._drain_rate + 0.2 * rate

    async def _commit(self, group: list[_Pending]) -> None:
        if len(group) == 1 and isinstance(group[0].batch.rows, LazyRows):
            # Alone: its rows are built while they are written (`stream`).
            try:
                with database_errors():
                    outcome = await stream(self.database, group[0].batch)
            except Exception as exc:  # noqa: BLE001 - the waiter must hear about any failure
                outcome = exc
            _settle(group[0], outcome)
            return
        group = _built(group)
        if not group:
            return
        try:
            with database_errors():
                outcomes = await commit(self.database, [pending.batch for pending in group])
        except InvalidLogs as exc:
            if len(group) == 1:
                _settle(group[0], exc)
            else:
                # One request's rows spoiled the group: write each alone so only that one fails.
                for pending in group:
                    await self._commit([pending])
            return
        except Exception as exc:  # noqa: BLE001 - every waiter must hear about any failure
            for pending in group:
                _settle(pending, exc)
            return
        for pending, outcome in zip(group, outcomes, strict=True):
            _settle(pending, outcome)

    async def close(self) -> None:
        """Finish what is queued, then stop the writer tasks."""
        self._closing = True
        while self._queue or self._busy:
            await asyncio.sleep(0.01)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []


def _built(group: list[_Pending]) -> list[_Pending]:
    """The group with every batch's rows built; a batch whose rows are refused is answered and left out."""
    ready = []
    for pending in group:
        rows = pending.batch.rows
        if isinstance(rows, LazyRows):
            try:
                pending = replace(pending, batch=replace(pending.batch, rows=rows.build()))
            except IngestError as exc:
                _settle(pending, exc)
                continue
        ready.append(pending)
    return ready


def _settle(pending: _Pending, outcome: Outcome | IngestError | BaseException) -> None:
    if pending.done.done():
        return
    if isinstance(outcome, Outcome):
        pending.done.set_result(outcome)
    else:
        pending.done.set_exception(outcome)
