"""Settings, read once from the environment and an optional `.env` file.

Every variable is listed with its default in `.env.example` and in README.md's configuration table.
"""

from __future__ import annotations

import math
import os
from datetime import timedelta
from enum import Enum
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class IngestMode(str, Enum):
    # group: concurrent requests share one COPY transaction (see app/intake/writer.py).
    group = "group"
    # direct: one COPY transaction per request, as the product description's design does.
    direct = "direct"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # Where PostgreSQL comes from: DATABASE_URL, else DATABASE_SECRET_ARN (an RDS-style Secrets Manager
    # secret), else DATABASE_HOST + the other DATABASE_*, else embedded.
    database_url: str | None = None
    database_secret_arn: str | None = None
    database_host: str | None = None
    database_port: int = 5432
    database_name: str = "logs_db"
    database_user: str = "postgres"
    database_password: str = ""
    logsave_data_dir: Path = Path(".data")

    db_pool_min_size: int = Field(10, ge=0)
    # Per worker; unset: see `pool_max_size`.
    db_pool_max_size: int | None = Field(None, ge=1)
    # Seconds to wait for a connection (connect or pool acquire) before answering 503.
    db_acquire_timeout: float = Field(5.0, gt=0)
    # Seconds one SQL command may run before it is abandoned and the request answered 503.
    db_command_timeout: float = Field(30.0, gt=0)
    # 0 disables prepared-statement caching (needed behind pgbouncer / RDS Proxy in transaction mode).
    db_statement_cache_size: int = Field(100, ge=0)

    server_host: str = "0.0.0.0"
    server_port: int = Field(8000, ge=0, le=65535)
    # Seconds an idle keep-alive connection stays open; behind a load balancer, above its idle timeout.
    server_keepalive_timeout: int = Field(5, ge=1)
    # uvicorn worker processes; unset: one per CPU this process may use (see `workers`).
    web_concurrency: int | None = Field(None, ge=1)
    # Seconds uvicorn waits for in-flight requests after SIGTERM.
    shutdown_timeout: float = Field(25.0, gt=0)
    log_level: str = "INFO"

    max_batch_size: int = Field(1000, ge=1)
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    # Hostile or broken clients (app/intake/body.py, app/protocol.py; README "Limits and abuse"). Per worker:
    # bytes of request bodies held at once (received and decoded) before new ones get 429; sized so
    # that two workers stay well inside a 4 GB t3.medium with PostgreSQL beside them.
    body_memory_limit: int = Field(256 * 1024 * 1024, ge=1024)
    # Seconds a body may pause between two chunks, and the rate it must keep up after that many seconds.
    body_read_timeout: float = Field(10.0, gt=0)
    body_min_rate: int = Field(10 * 1024, ge=0)
    # Seconds a connection has to send a request's headers, from connecting or from the request's start.
    header_timeout: float = Field(10.0, gt=0)
    # Connections (and requests in progress) per worker before uvicorn answers 503.
    max_connections: int = Field(1000, ge=1)
    cors_origins: str = "*"

    ingest_mode: IngestMode = IngestMode.group
    # Group commit: how many COPY transactions may run at once, how many rows one may carry, and how
    # many rows may wait before new requests are turned away with 503.
    writer_concurrency: int = Field(2, ge=1)
    writer_max_group_rows: int = Field(10_000, ge=1)
    writer_max_queued_rows: int = Field(50_000, ge=1)

    # Storage (app/storage/partitions.py, app/storage/retention.py). Whole days older than RETENTION_DAYS are dropped;
    # 0 keeps logs forever. A created_at more than CREATED_AT_MAX_AGE_DAYS in the past or
    # CREATED_AT_MAX_AHEAD_HOURS in the future (a wrong client clock) is stored as the time received, the
    # original kept in metadata as `original_created_at`.
    retention_days: int = Field(30, ge=0)
    created_at_max_age_days: int = Field(30, ge=1)
    created_at_max_ahead_hours: int = Field(24, ge=1)
    # Cold storage (app/storage/archive.py): closed days older than ARCHIVE_AFTER_DAYS move from PostgreSQL to
    # Parquet files under ARCHIVE_URL (a directory, file://…, or s3://bucket/prefix); unset: no archive.
    archive_url: str | None = None
    archive_after_days: int | None = Field(None, ge=1)
    # Seconds a query (GET /logs, /traces) may run before it is stopped with a 422 asking to narrow it.
    query_timeout: float = Field(10.0, gt=0)
    logql_max_rows: int = Field(100_000, ge=1)
    """Rows a LogQL metric query may read into Python when its pipeline cannot run in the database (a
    parser, a formatter, a quantile): over it the query is a 400 asking to narrow it (app/logql/engine.py)."""
    logql_max_series: int = Field(5_000, ge=1)
    """Series a LogQL metric query may answer, and values a label-values call lists (Loki's max series)."""
    # GET /logs/stream (app/routes/stream.py): live streams open at once per worker (0: off, Lambda's default),
    # and seconds each lasts before it ends (the client reconnects with Last-Event-ID and carries on).
    stream_max_clients: int = Field(32, ge=0)
    stream_max_seconds: float = Field(300.0, gt=0)

    # Seconds an Idempotency-Key is remembered (app/intake/idempotency.py); pruned in the background after that.
    idempotency_ttl: float = Field(86_400, gt=0)
    # API keys, comma-separated. None set: no authentication. API_KEYS may do everything; INGEST_API_KEYS
    # may only send logs (POST, bulk PUT, the agents' probes: app/auth.py). Set either and every route but
    # GET / and GET /health/ready needs a key.
    api_keys: str = ""
    ingest_api_keys: str = ""
    # A Secrets Manager secret holding API_KEYS and/or INGEST_API_KEYS (Lambda), added to the two above.
    api_keys_secret_arn: str | None = None
    # The Elasticsearch version GET /elasticsearch/ claims (app/routes/bulk.py): Filebeat, Logstash and
    # Vector read it before they send, and refuse a major version they do not speak.
    elasticsearch_version: str = Field("8.9.0", pattern=r"^\d+\.\d+\.\d+$")

    # Seconds between two evaluations of the alert rules (app/alerts/); one process evaluates at a time.
    alert_interval: float = Field(60.0, gt=0)
    # The address people open the server at (https://logs.example.com), for the links in notifications;
    # unset, a notification links to a path (/ui?…).
    public_url: str = ""

    @field_validator("log_level")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @property
    def archive_enabled(self) -> bool:
        return bool(self.archive_url) and self.archive_after_days is not None

    @property
    def cors_origin_list(self) -> list[str]:
        return split_list(self.cors_origins)

    @property
    def created_at_window(self) -> tuple[timedelta, timedelta]:
        """How far before and after the time received a created_at is taken as given."""
        return timedelta(days=self.created_at_max_age_days), timedelta(hours=self.created_at_max_ahead_hours)

    @property
    def api_key_list(self) -> list[str]:
        return split_list(self.api_keys)

    @property
    def ingest_api_key_list(self) -> list[str]:
        return split_list(self.ingest_api_keys)

    @property
    def workers(self) -> int:
        """WEB_CONCURRENCY, else one worker per available CPU: the bench's http suite measures two workers
        well ahead of one on 2 vCPUs (results/REPORT.md), as each worker's Python runs on one core."""
        return self.web_concurrency or available_cpus()

    @property
    def pool_max_size(self) -> int:
        """DB_POOL_MAX_SIZE, else 20 per worker, fewer when there are more than 4 workers: one server's
        workers together stay within SERVER_CONNECTIONS, under PostgreSQL's default max_connections (100)."""
        if self.db_pool_max_size is not None:
            return self.db_pool_max_size
        return max(2, min(20, SERVER_CONNECTIONS // self.workers))

    @property
    def database_configured(self) -> bool:
        return bool(self.database_url or self.database_secret_arn or self.database_host)


# Connections one server's workers open at most when DB_POOL_MAX_SIZE is not set.
SERVER_CONNECTIONS = 80
# Where Linux's cgroup v2 states a container's CPU quota ("max 100000" when there is none).
CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask, lowered by a cgroup v2 CPU quota (a container
    started with --cpus, an ECS task's cpu) when there is one."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        count = os.cpu_count() or 1
    try:
        quota, period = CPU_MAX.read_text().split()[:2]
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return count


def split_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]
