"""The writer: row tuples -> one COPY inside a transaction -> commit. A request is answered only after
its rows are committed.

Two designs share one `write(rows)` interface, chosen by INGEST_MODE:

* `DirectWriter` ("direct"): each request runs its own COPY transaction, as the product description does.
* `GroupCommitWriter` ("group"): requests queue their rows; `writer_concurrency` tasks each take everything
  queued (up to `writer_max_group_rows`) the moment they are free, COPY it in one transaction, and answer
  every request in it at commit. No timer: an idle server writes a lone request at once, a busy one writes
  bigger groups. The queue is bounded; when it is full a request gets 503 + Retry-After instead of waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg

from app.config import IngestMode, Settings
from app.database import Database
from app.errors import InvalidLogs, ServiceUnavailable
from app.rows import COLUMNS

log = logging.getLogger(__name__)

Row = tuple[Any, ...]

# Errors that mean "PostgreSQL is not reachable right now", answered 503 + Retry-After.
_UNAVAILABLE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.OperatorInterventionError,
    asyncpg.InsufficientResourcesError,
)
# Errors where PostgreSQL itself refused the data.
_REFUSED = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)
# The connection was found dead before anything was sent (e.g. a Lambda container thawed after the
# server closed its idle connection): safe to retry once on a fresh connection.
# InternalClientError is what asyncpg raises when the server's goodbye arrived but the socket's close has
# not been processed yet.
_STALE = (
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    ConnectionResetError,
    BrokenPipeError,
)


class Writer(Protocol):
    async def write(self, rows: Sequence[Row]) -> None: ...

    async def close(self) -> None: ...


def create(settings: Settings, database: Database, mode: IngestMode | None = None) -> Writer:
    mode = mode or settings.ingest_mode
    if mode is IngestMode.direct:
        return DirectWriter(database, settings)
    return GroupCommitWriter(database, settings)


@contextlib.contextmanager
def database_errors() -> Iterator[None]:
    """Turn driver errors into the domain's: 503 when the database is away, 422 when it refused data."""
    try:
        yield
    except _REFUSED as exc:
        raise InvalidLogs(
            [{"field": "logs", "message": f"PostgreSQL refused the batch: {exc}", "type": "db_refused"}]
        ) from exc
    except _UNAVAILABLE as exc:
        raise ServiceUnavailable(f"database unavailable: {type(exc).__name__}: {exc}".rstrip(": ")) from exc


async def copy_rows(database: Database, rows: Sequence[Row]) -> None:
    """COPY `rows` into logs in one committed transaction; retry once if the pooled connection was stale."""
    pool = await database.pool()
    timeout = database.settings.db_acquire_timeout
    for attempt in (1, 2):
        async with pool.acquire(timeout=timeout) as conn:
            transaction = conn.transaction()
            try:
                await transaction.start()
            except _STALE:
                if attempt == 2:
                    raise
                log.warning("stale database connection, retrying once on a new one")
                continue
            try:
                await conn.copy_records_to_table("logs", records=rows, columns=COLUMNS)
            except BaseException:
                # Rollback on a broken connection fails too; the original error is the one to report.
                with contextlib.suppress(Exception):
                    await transaction.rollback()
                raise
            await transaction.commit()
            return


class DirectWriter:
    def __init__(self, database: Database, settings: Settings) -> None:
        self.database = database

    async def write(self, rows: Sequence[Row]) -> None:
        with database_errors():
            await copy_rows(self.database, rows)

    async def close(self) -> None:
        pass


@dataclass
class _Pending:
    rows: Sequence[Row]
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


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

    async def write(self, rows: Sequence[Row]) -> None:
        if self._closing:
            raise ServiceUnavailable("server is shutting down")
        # One request larger than the whole queue is still let in when the queue is empty.
        if self._queued_rows and self._queued_rows + len(rows) > self.max_queued_rows:
            raise ServiceUnavailable(f"write queue is full ({self._queued_rows} logs waiting); retry shortly")
        if not self._tasks:
            self._start()
        pending = _Pending(rows)
        self._queue.append(pending)
        self._queued_rows += len(rows)
        assert self._wakeup is not None
        self._wakeup.set()
        # shield: a client that disconnects must not cancel a COPY that carries other requests' rows.
        await asyncio.shield(pending.done)

    def _start(self) -> None:
        self._wakeup = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._run(), name=f"group-writer-{i}") for i in range(self.concurrency)
        ]

    def _take_group(self) -> list[_Pending]:
        group = [self._queue.popleft()]
        size = len(group[0].rows)
        while self._queue and size + len(self._queue[0].rows) <= self.max_group_rows:
            group.append(self._queue.popleft())
            size += len(group[-1].rows)
        self._queued_rows -= size
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
            try:
                await self._commit(group)
            finally:
                self._busy -= 1

    async def _commit(self, group: list[_Pending]) -> None:
        rows = group[0].rows if len(group) == 1 else [row for pending in group for row in pending.rows]
        try:
            with database_errors():
                await copy_rows(self.database, rows)
        except InvalidLogs as exc:
            if len(group) == 1:
                _settle(group[0], error=exc)
            else:
                # One request's rows spoiled the group: write each alone so only that one fails.
                for pending in group:
                    await self._commit([pending])
            return
        except Exception as exc:  # noqa: BLE001 - every waiter must hear about any failure
            for pending in group:
                _settle(pending, error=exc)
            return
        for pending in group:
            _settle(pending)

    async def close(self) -> None:
        """Finish what is queued, then stop the writer tasks."""
        self._closing = True
        while self._queue or self._busy:
            await asyncio.sleep(0.01)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []


def _settle(pending: _Pending, error: BaseException | None = None) -> None:
    if pending.done.done():
        return
    if error is None:
        pending.done.set_result(None)
    else:
        pending.done.set_exception(error)
