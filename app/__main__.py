"""`python -m app`: serve log-save-server with uvicorn (uvloop + httptools)."""

from __future__ import annotations

import atexit
import logging
import os
import signal
import tempfile

import uvicorn
from fastapi import FastAPI

from app import database, jsonlog, metrics
from app.config import Settings
from app.main import create_app

log = logging.getLogger("app")


def main() -> None:
    settings = Settings()
    jsonlog.configure(settings.log_level)
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
    if settings.web_concurrency > 1 and not os.environ.get(metrics.MULTIPROC_DIR):
        # Each worker writes its metrics into files here and /metrics adds them up (app/metrics.py).
        # Set before uvicorn spawns the workers, which import prometheus_client afresh and read it then.
        directory = tempfile.TemporaryDirectory(prefix="logsave-metrics-")
        atexit.register(directory.cleanup)
        os.environ[metrics.MULTIPROC_DIR] = directory.name
    uvicorn.run(
        "app.__main__:serve",
        factory=True,
        host=settings.server_host,
        port=settings.server_port,
        workers=settings.web_concurrency,
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
    settings = Settings()
    jsonlog.configure(settings.log_level)
    return create_app(settings)


if __name__ == "__main__":
    main()
