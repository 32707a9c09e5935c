"""One real PostgreSQL per test session: TEST_DATABASE_URL when set, else an embedded server in a temp dir.

Tests that touch the database get `logs`, `idempotency_keys` and `alert_rules` emptied before they run, so
counts are their own.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from fastapi.testclient import TestClient

from app import embedded
from app.config import Settings
from app.main import create_app
from app.storage import migrations
from bench.database import make_partitions
from tests.serverproc import start_server
from tests.support import DB, make_settings, run


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("TEST_DATABASE_URL") or embedded.start(tmp_path_factory.mktemp("pg"), "logsave_test")
    run(_migrate(url))
    return url


async def _migrate(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await migrations.apply(conn)
        await make_partitions(conn)  # the days tests write to without going through the app
    finally:
        await conn.close()


@pytest.fixture
def db(database_url: str) -> DB:
    database = DB(database_url)
    database.fetch(
        "TRUNCATE logs, idempotency_keys, log_counts, log_minutes, bulk_ids, alert_rules, search_blocks, search_days, search_dirty"
    )
    return database


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
def client(db: DB, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def events_dir() -> Path:
    return Path(__file__).parent / "events"


@pytest.fixture
def server(db: DB, database_url: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    process, url = start_server({"DATABASE_URL": database_url}, tmp_path)
    yield process, url
    if process.poll() is None:
        process.kill()
        process.wait(10)
