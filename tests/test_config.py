from __future__ import annotations

import os
from pathlib import Path

import pytest

from app import config, settings_doc
from app.config import IngestMode, Settings


def test_defaults_match_the_documented_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "DATABASE_HOST", "DB_POOL_MIN_SIZE", "DB_POOL_MAX_SIZE", "SERVER_PORT",
                 "WEB_CONCURRENCY"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(config, "CPU_MAX", Path("/nonexistent/cpu.max"))
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (settings.db_pool_min_size, settings.pool_max_size, settings.workers) == (10, 20, 2)
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


def test_env_example_values_are_the_defaults() -> None:
    # Lines that are not comments set a value: it must be the default, or copying the file changes behaviour.
    example = (Path(__file__).parent.parent / ".env.example").read_text()
    for line in example.splitlines():
        if line and not line.startswith("#"):
            name, value = line.split("=", 1)
            assert settings_doc.default(Settings.model_fields[name.lower()]) == (value or "empty"), line


def test_invalid_values_fail_at_start_up() -> None:
    with pytest.raises(ValueError, match="ingest_mode"):
        Settings(_env_file=None, ingest_mode="sometimes")  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("cpus", "cpu_max", "workers"),
    [
        ({0, 1}, None, 2),  # no cgroup file: the affinity mask
        ({0, 1, 2, 3, 4, 5, 6, 7}, "max 100000\n", 8),  # no quota
        ({0, 1, 2, 3, 4, 5, 6, 7}, "200000 100000\n", 2),  # docker run --cpus=2 on an 8-CPU host
        ({0, 1, 2, 3}, "150000 100000\n", 2),  # 1.5 CPUs: two workers, each less than a core
        ({0, 1}, "50000 100000\n", 1),
    ],
)
def test_workers_default_to_the_cpus_this_process_may_use(
    cpus: set[int], cpu_max: str | None, workers: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: cpus)
    path = tmp_path / "cpu.max"
    if cpu_max is not None:
        path.write_text(cpu_max)
    monkeypatch.setattr(config, "CPU_MAX", path)
    assert Settings(_env_file=None).workers == workers  # type: ignore[call-arg]
    assert Settings(_env_file=None, web_concurrency=3).workers == 3  # type: ignore[call-arg]


@pytest.mark.parametrize(("workers", "pool"), [(1, 20), (2, 20), (4, 20), (8, 10), (16, 5), (64, 2)])
def test_the_default_pool_keeps_all_workers_under_postgres_default_max_connections(
    workers: int, pool: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DB_POOL_MAX_SIZE", raising=False)
    settings = Settings(_env_file=None, web_concurrency=workers)  # type: ignore[call-arg]
    assert settings.pool_max_size == pool
    assert workers * pool <= 100 or pool == 2  # beyond 40 workers, set DB_POOL_MAX_SIZE (and max_connections)
    assert Settings(_env_file=None, web_concurrency=workers, db_pool_max_size=7).pool_max_size == 7  # type: ignore[call-arg]
