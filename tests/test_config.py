from __future__ import annotations

from pathlib import Path

import pytest

from app.config import IngestMode, Settings


def test_defaults_match_the_documented_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "DATABASE_HOST", "DB_POOL_MIN_SIZE", "DB_POOL_MAX_SIZE", "SERVER_PORT"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (settings.db_pool_min_size, settings.db_pool_max_size) == (10, 20)
    assert (settings.server_host, settings.server_port) == ("0.0.0.0", 8000)
    assert (settings.max_batch_size, settings.max_body_bytes) == (1000, 10 * 1024 * 1024)
    assert settings.database_name == "logs_db" and settings.database_user == "postgres"
    assert settings.logsave_data_dir == Path(".data")
    assert settings.ingest_mode is IngestMode.group
    assert settings.cors_origin_list == ["*"]
    assert not settings.database_configured


def test_environment_and_env_file_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "DATABASE_HOST=db\nDB_POOL_MAX_SIZE=7\nCORS_ORIGINS=https://a.example, https://b.example\n"
    )
    monkeypatch.setenv("DB_POOL_MAX_SIZE", "9")  # the environment beats the file
    monkeypatch.setenv("INGEST_MODE", "direct")
    settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
    assert settings.database_host == "db" and settings.database_configured
    assert settings.db_pool_max_size == 9
    assert settings.ingest_mode is IngestMode.direct
    assert settings.cors_origin_list == ["https://a.example", "https://b.example"]


def test_env_example_lists_every_setting() -> None:
    example = (Path(__file__).parent.parent / ".env.example").read_text()
    names = {line.split("=")[0].lstrip("# ").strip() for line in example.splitlines() if "=" in line}
    assert names == {field.upper() for field in Settings.model_fields}


def test_invalid_values_fail_at_start_up() -> None:
    with pytest.raises(ValueError, match="ingest_mode"):
        Settings(_env_file=None, ingest_mode="sometimes")  # type: ignore[call-arg]
