from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import asyncpg
import pytest

from app.config import Settings
from app.database import Database, resolve
from app.errors import DatabaseNotConfigured
from app.storage import migrations
from tests.support import DB


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def test_database_url_wins() -> None:
    source = resolve(settings(database_url="postgresql://u:p@db/x", database_host="other"))
    assert (source.dsn, source.description) == ("postgresql://u:p@db/x", "DATABASE_URL")


def test_database_host_and_friends_build_a_dsn_with_quoted_credentials() -> None:
    source = resolve(
        settings(
            database_host="db.internal",
            database_port=6543,
            database_name="logs",
            database_user="app",
            database_password="p@ss:w/rd",
        )
    )
    assert source.dsn == "postgresql://app:p%40ss%3Aw%2Frd@db.internal:6543/logs"
    assert source.description == "DATABASE_HOST (db.internal:6543/logs)"


def test_database_host_uses_the_seeds_defaults() -> None:
    assert resolve(settings(database_host="localhost")).dsn == "postgresql://postgres@localhost:5432/logs_db"


def test_without_configuration_and_without_embedding_the_error_says_what_is_missing() -> None:
    with pytest.raises(
        DatabaseNotConfigured, match="set DATABASE_URL, DATABASE_SECRET_ARN, or DATABASE_HOST"
    ):
        resolve(settings(), allow_embedded=False)


def test_without_configuration_an_embedded_server_is_started(tmp_path: Path) -> None:
    source = resolve(settings(logsave_data_dir=tmp_path / "data", database_name="embedded_check"))
    assert source.description == f"embedded PostgreSQL in {tmp_path / 'data' / 'pg'}"
    assert (tmp_path / "data" / "pg" / "PG_VERSION").exists()

    async def check() -> str:
        conn = await asyncpg.connect(source.dsn)
        try:
            return await conn.fetchval("SELECT current_database()")
        finally:
            await conn.close()

    assert asyncio.run(check()) == "embedded_check"


def test_pool_is_created_once_and_schema_is_current(db: DB, database_url: str) -> None:
    async def check() -> None:
        database = Database(settings(database_url=database_url, db_pool_min_size=1, db_pool_max_size=2))
        first, second = await asyncio.gather(database.pool(), database.pool())
        assert first is second
        assert await first.fetchval("SELECT count(*) FROM logs") == 0
        await database.close()

    asyncio.run(check())


def test_migrations_are_recorded_and_applied_once(db: DB, database_url: str) -> None:
    async def check() -> list[str]:
        conn = await asyncpg.connect(database_url)
        try:
            return await migrations.apply(conn)
        finally:
            await conn.close()

    assert asyncio.run(check()) == []  # the session fixture already applied everything
    recorded = [r["version"] for r in db.fetch("SELECT version FROM schema_migrations ORDER BY version")]
    assert recorded == [version for version, _ in migrations.available()]
    assert recorded[0] == "0001_create_logs"


def test_the_table_has_the_seeds_21_columns_in_order(db: DB) -> None:
    columns = db.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'logs' ORDER BY ordinal_position"
    )
    assert [c["column_name"] for c in columns] == [
        "id", "created_at", "level", "log_type", "service", "environment", "service_version", "trace_id",
        "user_id", "session_id", "error_type", "message", "stack_trace", "path", "method", "action_type",
        "function_name", "file_path", "duration_ms", "deleted", "metadata",
        # After them, what a Loki push keeps to give back through the query API (migration 0010).
        "loki_labels", "loki_metadata", "loki_line",
    ]  # fmt: skip


class FakeSecretsManager:
    """Stands in for AWS Secrets Manager, which cannot exist here."""

    def __init__(self, secret: dict[str, object]) -> None:
        self.secret = secret
        self.asked: list[str] = []

    def get_secret_value(self, SecretId: str) -> dict[str, str]:
        self.asked.append(SecretId)
        return {"SecretString": json.dumps(self.secret)}


def test_a_secrets_manager_secret_in_rds_format_builds_the_dsn(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSecretsManager({"engine": "postgres", "host": "db.aws", "port": 5433, "username": "app",
                               "password": "s/cret", "dbname": "logs"})  # fmt: skip
    monkeypatch.setitem(sys.modules, "boto3", SimpleNamespace(client=lambda service: fake))
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:logs-db"
    source = resolve(settings(database_secret_arn=arn, database_host="ignored"))
    assert source.dsn == "postgresql://app:s%2Fcret@db.aws:5433/logs"
    assert source.description == "DATABASE_SECRET_ARN (db.aws)"
    assert fake.asked == [arn]


def test_a_secret_without_credentials_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSecretsManager({"host": "db.aws"})
    monkeypatch.setitem(sys.modules, "boto3", SimpleNamespace(client=lambda service: fake))
    with pytest.raises(ValueError, match="lacks username, password"):
        resolve(settings(database_secret_arn="arn:x"))
