"""`python -m app`: serve log-save-server with uvicorn (uvloop + httptools).

`python -m app retention [--dry-run]`: one retention pass (app/storage/retention.py); prints what it dropped.

`python -m app archive [--dry-run]`: one cold-storage pass (app/storage/archive.py); prints what it moved.

`python -m app config [--markdown]`: every setting with its default and meaning (app/settings_doc.py).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import logging
import os
import signal
import sys
import tempfile

import asyncpg
from fastapi import FastAPI

from app import database, heap, jsonlog, lifeline, metrics, settings_doc
from app.config import Settings
from app.storage import archive, maintenance, migrations, retention

log = logging.getLogger("app")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description="log-save-server")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve HTTP (the default)")
    retention_cmd = commands.add_parser(
        "retention", help="drop partitions older than RETENTION_DAYS, then exit"
    )
    retention_cmd.add_argument("--dry-run", action="store_true", help="only list what would be dropped")
    archive_cmd = commands.add_parser(
        "archive", help="move closed days older than ARCHIVE_AFTER_DAYS to ARCHIVE_URL, then exit"
    )
    archive_cmd.add_argument("--dry-run", action="store_true", help="only list what would be moved")
    config_cmd = commands.add_parser("config", help="print every setting, its default and its meaning")
    config_cmd.add_argument("--markdown", action="store_true", help="as docs/configuration.md")
    args = parser.parse_args(argv)
    if args.command == "config":
        # Before Settings(): the documentation does not depend on this environment being valid.
        print(settings_doc.markdown() if args.markdown else settings_doc.text(), end="")
        return 0
    settings = Settings()
    jsonlog.configure(settings.log_level)
    if args.command == "retention":
        return asyncio.run(_retention(settings, args.dry_run))
    if args.command == "archive":
        return asyncio.run(_archive(settings, args.dry_run))
    serve_http(settings)
    return 0


async def _retention(settings: Settings, dry_run: bool) -> int:
    source = await asyncio.to_thread(database.resolve, settings)
    conn = await asyncpg.connect(source.dsn)
    try:
        await migrations.apply(conn)
        dropped = await retention.run(conn, settings.retention_days, dry_run=dry_run)
    finally:
        await conn.close()
    verb = "would drop" if dry_run else "dropped"
    if settings.retention_days <= 0:
        print("RETENTION_DAYS is 0: logs are kept forever; nothing to drop")
    else:
        cutoff = retention.cutoff(settings.retention_days)
        print(f"RETENTION_DAYS={settings.retention_days}: partitions before {cutoff} {verb}: {len(dropped)}")
    for name in dropped:
        print(f"  {name}")
    return 0


async def _archive(settings: Settings, dry_run: bool) -> int:
    if not settings.archive_enabled:
        print("ARCHIVE_URL and ARCHIVE_AFTER_DAYS must both be set to archive", file=sys.stderr)
        return 2
    source = await asyncio.to_thread(database.resolve, settings)
    conn = await asyncpg.connect(source.dsn)
    try:
        await migrations.apply(conn)
        # The housekeeping loop's lock: never two passes at once, whoever runs them.
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", maintenance.LOCK_KEY):
            print("another process is doing housekeeping; try again later", file=sys.stderr)
            return 1
        done = await archive.housekeeping(conn, settings, dry_run=dry_run)
    finally:
        await conn.close()
    if "archive_skipped" in done:
        print(done["archive_skipped"], file=sys.stderr)
        return 1
    verb = "would move" if dry_run else "moved"
    limit = archive.cutoff(settings.archive_after_days or 0)
    print(
        f"ARCHIVE_AFTER_DAYS={settings.archive_after_days}: days before {limit} {verb}: {len(done['archived'])}"
    )
    for moved in done["archived"]:
        print(f"  {moved['day']}: {moved.get('rows', '?')} rows -> {moved.get('part', '(nothing)')}")
    for day in done["archive_expired"]:
        print(f"  {day}: past RETENTION_DAYS, files removed")
    return 0


def serve_http(settings: Settings) -> None:
    if not settings.database_configured:
        # Started here, in the parent, so that every uvicorn worker shares one embedded server and it is
        # stopped once, when this process exits.
        source = database.resolve(settings)
        log.info("database: %s (handed to the app as DATABASE_URL)", source.description)
        os.environ["DATABASE_URL"] = source.dsn
    # uvicorn drains on SIGTERM/SIGINT, then re-raises the signal to whatever handler was there before.
    # With the default handler the process would die by the signal: no exit 0, and no atexit, which is
    # where the embedded PostgreSQL is stopped. A handler that does nothing lets main() return normally.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _drained)
    workers = settings.workers
    # Every worker reads its settings afresh: they must all size their pools for the same count.
    os.environ["WEB_CONCURRENCY"] = str(workers)
    log.info("%d worker(s), each with up to %d database connections", workers, settings.pool_max_size)
    if workers > 1 and not os.environ.get(metrics.MULTIPROC_DIR):
        # Each worker writes its metrics into files here and /metrics adds them up (app/metrics.py).
        # Set before uvicorn spawns the workers, which import prometheus_client afresh and read it then.
        directory = tempfile.TemporaryDirectory(prefix="logsave-metrics-")
        atexit.register(directory.cleanup)
        os.environ[metrics.MULTIPROC_DIR] = directory.name
    # Imported here (and create_app in serve()): the one-shot commands stay small (the archive pass's memory).
    import uvicorn

    uvicorn.run(
        "app.__main__:serve",
        factory=True,
        host=settings.server_host,
        port=settings.server_port,
        workers=workers,
        loop="uvloop",
        # httptools, plus a header timeout (app/protocol.py).
        http="app.protocol:HeaderTimeoutProtocol",
        limit_concurrency=settings.max_connections,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        timeout_keep_alive=settings.server_keepalive_timeout,
        timeout_graceful_shutdown=int(settings.shutdown_timeout),
    )


def _drained(signum: int, frame: object) -> None:
    log.info("shut down after %s", signal.Signals(signum).name)


def serve() -> FastAPI:
    """The app as each uvicorn worker process builds it, logging JSON lines like the parent."""
    lifeline.follow_parent()
    settings = Settings()
    jsonlog.configure(settings.log_level)
    from app.main import create_app

    app = create_app(settings)
    heap.settle()
    return app


if __name__ == "__main__":
    sys.exit(main())
