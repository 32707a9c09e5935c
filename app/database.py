"""Where PostgreSQL comes from, and the asyncpg pool every request shares."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import quote

import asyncpg

from app import embedded, numeric, secrets
from app.config import Settings
from app.errors import DatabaseNotConfigured
from app.storage import migrations
from app.storage.partitions import Partitions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    dsn: str
    # What the start-up log line says: "DATABASE_URL", "DATABASE_HOST=db:5432/logs_db" or "embedded ...".
    description: str


def resolve(settings: Settings, *, allow_embedded: bool = True) -> Source:
    """DATABASE_URL, else DATABASE_SECRET_ARN, else DATABASE_HOST and friends, else an embedded PostgreSQL."""
    if settings.database_url:
        return Source(settings.database_url, "DATABASE_URL")
    if settings.database_secret_arn:
        secret = secrets.fetch(settings.database_secret_arn)
        dsn = _dsn(secret["host"], int(secret.get("port", 5432)), secret.get("dbname", settings.database_name),
                   secret["username"], secret["password"])  # fmt: skip
        return Source(dsn, f"DATABASE_SECRET_ARN ({secret['host']})")
    if settings.database_host:
        dsn = _dsn(settings.database_host, settings.database_port, settings.database_name,
                   settings.database_user, settings.database_password)  # fmt: skip
        where = f"{settings.database_host}:{settings.database_port}/{settings.database_name}"
        return Source(dsn, f"DATABASE_HOST ({where})")
    if not allow_embedded:
        raise DatabaseNotConfigured(
            "no database configured: set DATABASE_URL, DATABASE_SECRET_ARN, or DATABASE_HOST with "
            "DATABASE_PORT, DATABASE_NAME, DATABASE_USER and DATABASE_PASSWORD"
        )
    data_dir = settings.logsave_data_dir.resolve()
    dsn = embedded.start(data_dir, settings.database_name)
    return Source(dsn, f"embedded PostgreSQL in {data_dir / 'pg'}")


def _dsn(host: str, port: int, name: str, user: str, password: str) -> str:
    auth = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
    return f"postgresql://{auth}@{host}:{port}/{quote(name, safe='')}"


async def init_connection(conn: asyncpg.Connection) -> None:
    """Set up every connection the app (or the bench) writes logs through."""
    await conn.set_type_codec(
        "numeric", schema="pg_catalog", encoder=numeric.encode, decoder=numeric.decode, format="binary"
    )


async def create_pool(settings: Settings, dsn: str) -> asyncpg.Pool:
    """Open the pool and bring the schema up to date before the first request is served."""
    pool = await asyncpg.create_pool(
        dsn,
        init=init_connection,
        min_size=min(settings.db_pool_min_size, settings.pool_max_size),
        max_size=settings.pool_max_size,
        timeout=settings.db_acquire_timeout,
        command_timeout=settings.db_command_timeout,
        statement_cache_size=settings.db_statement_cache_size,
    )
    try:
        async with pool.acquire(timeout=settings.db_acquire_timeout) as conn:
            applied = await migrations.apply(conn)
    except BaseException:
        await pool.close()
        raise
    if applied:
        log.info("schema migrations applied", extra={"migrations": applied})
    return pool


class Database:
    """The pool, created on first use so that Lambda (no lifespan) and uvicorn (lifespan) share one path."""

    def __init__(self, settings: Settings, *, allow_embedded: bool = True) -> None:
        self.settings = settings
        self.allow_embedded = allow_embedded
        self.source: Source | None = None
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()
        self.partitions = Partitions()

    async def pool(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        async with self._lock:
            if self._pool is None:
                if self.source is None:
                    # Starting an embedded server blocks for a second or two; keep the loop free.
                    self.source = await asyncio.to_thread(
                        resolve, self.settings, allow_embedded=self.allow_embedded
                    )
                    log.info("database: %s", self.source.description)
                self._pool = await create_pool(self.settings, self.source.dsn)
        return self._pool

    @asynccontextmanager
    async def snapshot(self, statement_timeout: float | None = None) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection in one read-only REPEATABLE READ transaction, so that every read of a request
        (rows, summary, which days are archived) sees the same moment; each statement limited to
        statement_timeout seconds when given."""
        pool = await self.pool()
        async with (
            pool.acquire(timeout=self.settings.db_acquire_timeout) as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            if statement_timeout is not None:
                await conn.execute(f"SET LOCAL statement_timeout = {int(statement_timeout * 1000)}")
            yield conn

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()
