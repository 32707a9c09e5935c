"""Settings, read once from the environment and an optional `.env` file.

Every variable is listed with its default in `.env.example`; `python -m app config` prints each with its
meaning, and docs/configuration.md is generated from the same docstrings (app/settings_doc.py).
"""

from __future__ import annotations

import math
import os
from datetime import timedelta
from enum import Enum
from pathlib import Path
from typing import Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class IngestMode(str, Enum):
    # group: concurrent requests share one COPY transaction (see app/intake/writer.py).
    group = "group"
    # direct: one COPY transaction per request, as the product description's design does.
    direct = "direct"


class Settings(BaseSettings):
    # Each field's docstring is its documentation: `python -m app config` and docs/configuration.md are
    # generated from them (app/settings_doc.py), so a field without one fails tests/test_settings_doc.py.
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", use_attribute_docstrings=True
    )

    # Where PostgreSQL comes from: DATABASE_URL, else DATABASE_SECRET_ARN (an RDS-style Secrets Manager
    # secret), else DATABASE_HOST + the other DATABASE_*, else embedded.
    database_url: str | None = None
    """PostgreSQL DSN (`postgresql://user:password@host:5432/logs_db`); wins over every other DATABASE_*."""
    database_secret_arn: str | None = None
    """A Secrets Manager secret in RDS format (host, port, username, password, dbname), read when
    DATABASE_URL is unset; needs boto3 (present on Lambda)."""
    database_host: str | None = None
    """When set (and the two above are not), the DSN is built from it, DATABASE_PORT, DATABASE_NAME,
    DATABASE_USER and DATABASE_PASSWORD."""
    database_port: int = 5432
    """PostgreSQL's port, with DATABASE_HOST."""
    database_name: str = "logs_db"
    """The database, with DATABASE_HOST."""
    database_user: str = "postgres"
    """The user, with DATABASE_HOST."""
    database_password: str = ""
    """The user's password, with DATABASE_HOST."""
    logsave_data_dir: Path = Path(".data")
    """Where the embedded PostgreSQL keeps its data: `python -m app` starts one itself when none of
    DATABASE_URL, DATABASE_SECRET_ARN and DATABASE_HOST is set, and stops it on exit."""

    db_pool_min_size: int = Field(10, ge=0)
    """Connections each worker process's asyncpg pool keeps open (Lambda: 0)."""
    db_pool_max_size: int | None = Field(None, ge=1)
    """Most connections in each worker process's pool; unset: 20, or 80 ÷ workers when that is smaller (at
    least 2), so one server's workers stay under PostgreSQL's default max_connections (100) (Lambda: 1)."""
    db_acquire_timeout: float = Field(5.0, gt=0)
    """Seconds to wait for a connection (connect or pool acquire) before answering 503."""
    db_command_timeout: float = Field(30.0, gt=0)
    """Seconds one SQL command may run before it is abandoned and the request answered 503."""
    db_statement_cache_size: int = Field(100, ge=0)
    """Prepared statements cached per connection; 0 disables the cache, which is needed behind pgbouncer or
    RDS Proxy in transaction mode."""

    server_host: str = "0.0.0.0"
    """The address `python -m app` listens on."""
    server_port: int = Field(8000, ge=0, le=65535)
    """The port `python -m app` listens on."""
    server_keepalive_timeout: int = Field(5, ge=1)
    """Seconds an idle keep-alive connection stays open; behind a load balancer, above its idle timeout
    (an ALB's 60 s: 75)."""
    web_concurrency: int | None = Field(None, ge=1)
    """uvicorn worker processes; unset: one per CPU this process may use (its affinity mask, lowered by a
    container's cgroup CPU quota). Two workers take clearly more logs/s than one on 2 vCPUs
    (results/REPORT.md)."""
    shutdown_timeout: float = Field(25.0, gt=0)
    """Seconds uvicorn waits for in-flight requests to finish after SIGTERM."""
    log_level: str = "INFO"
    """Level of the server's own JSON-lines log (DEBUG, INFO, WARNING, ERROR; any case)."""

    max_batch_size: int = Field(1000, ge=1)
    """Most logs in one request; more is a 422."""
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    """Most bytes in one request body, on the wire and once decompressed; more is a 413."""
    # Hostile or broken clients (app/intake/body.py, app/protocol.py; docs/limits.md), all per worker.
    body_memory_limit: int = Field(256 * 1024 * 1024, ge=1024)
    """Bytes of request bodies one worker holds at once (received and decoded) before new ones get 429
    with Retry-After; sized so that two workers stay well inside a 4 GB t3.medium with PostgreSQL beside
    them."""
    body_read_timeout: float = Field(10.0, gt=0)
    """Seconds a body may pause between two chunks before the request is answered 408 and the connection
    closed; also when BODY_MIN_RATE starts to apply."""
    body_min_rate: int = Field(10 * 1024, ge=0)
    """Bytes per second a body must keep up after BODY_READ_TIMEOUT seconds, else 408."""
    header_timeout: float = Field(10.0, gt=0)
    """Seconds a connection has to send a request's headers, from connecting or from the request's first
    byte, before it is closed."""
    max_connections: int = Field(1000, ge=1)
    """Open connections (and requests in progress) per worker before uvicorn answers 503."""
    cors_origins: str = "*"
    """Comma-separated origins a browser may call the API from; `*`: any."""

    ingest_mode: IngestMode = IngestMode.group
    """`group`: concurrent requests share one COPY transaction; `direct`: one COPY transaction per request
    (Lambda always writes direct)."""
    # Group commit (app/intake/writer.py).
    writer_concurrency: int = Field(2, ge=1)
    """Group mode: COPY transactions running at once, per worker."""
    writer_max_group_rows: int = Field(10_000, ge=1)
    """Group mode: most rows one COPY transaction carries."""
    writer_max_queued_rows: int = Field(50_000, ge=1)
    """Group mode: rows that may wait for a COPY before new requests are turned away with 429."""

    # Storage (app/storage/partitions.py, app/storage/retention.py; docs/storage.md).
    retention_days: int = Field(30, ge=0)
    """Whole UTC days of logs kept: older daily partitions (and archived days) are dropped; 0 keeps logs
    forever."""
    created_at_max_age_days: int = Field(30, ge=1)
    """A created_at more than this many days before the time received (a wrong client clock) is stored as
    the time received, the original kept in metadata as `original_created_at`."""
    created_at_max_ahead_hours: int = Field(24, ge=1)
    """The same for a created_at more than this many hours after the time received."""
    # Cold storage (app/storage/archive.py).
    archive_url: str | None = None
    """Where closed days go as Parquet files: a directory, `file:///…`, or `s3://bucket/prefix` (S3
    credentials and AWS_ENDPOINT_URL from the usual AWS variables); unset: no archive."""
    archive_after_days: int | None = Field(None, ge=1)
    """Whole UTC days kept in PostgreSQL before a day moves to ARCHIVE_URL; unset: no archive."""
    query_timeout: float = Field(10.0, gt=0)
    """Seconds a read query (GET /logs, /traces, /logs/facets) may run before it is stopped with a 422
    `query_timeout` asking to narrow it; also bounds each alert count and each live-stream poll."""
    search_index: bool = True
    """The search index (app/search/, docs/search.md): on, the writer adds a bloom filter of each COPY group's
    words in the same transaction (a few % more server CPU per log) and GET /logs' `q=` and `meta.` read only
    candidate rows; off, nothing is indexed and every search scans. Answers are the same either way. Every
    server writing to one database should agree: rows written with it off switch the index off for every
    reader until the housekeeping's backfill has re-indexed their days."""
    logql_max_rows: int = Field(100_000, ge=1)
    """Rows a LogQL metric query may read into Python when its pipeline cannot run in the database (a
    parser, a formatter, a quantile): over it the query is a 400 asking to narrow it (app/logql/engine.py)."""
    logql_max_series: int = Field(5_000, ge=1)
    """Series a LogQL metric query may answer, and values a label-values call lists (Loki's max series)."""
    stream_max_clients: int = Field(32, ge=0)
    """Live streams (GET /logs/stream) open at once per worker, then 429; 0 turns them off (501), the
    default on Lambda, where API Gateway buffers an answer whole."""
    stream_max_seconds: float = Field(300.0, gt=0)
    """Seconds one live stream lasts before it ends; the client resumes with Last-Event-ID."""

    # Syslog listeners (app/syslog/, docs/syslog.md): each is off until its port is set; never on the Lambda.
    syslog_host: str | None = None
    """Address the syslog listeners bind to; unset: SERVER_HOST."""
    syslog_tcp_port: int | None = Field(None, ge=1, le=65535)
    """TCP port for syslog (RFC 6587: octet-counted or LF-terminated, detected per message); unset: off."""
    syslog_udp_port: int | None = Field(None, ge=1, le=65535)
    """UDP port for syslog, one message per datagram; unset: off. UDP loses messages by nature: what cannot
    be stored (PostgreSQL away, queue full) is dropped and counted in logsave_syslog_dropped_total."""
    syslog_tls_port: int | None = Field(None, ge=1, le=65535)
    """TLS port for syslog (RFC 5425, octet-counted); needs SYSLOG_TLS_CERT and SYSLOG_TLS_KEY; unset: off."""
    syslog_tls_cert: Path | None = None
    """PEM certificate (chain) the syslog TLS listener presents."""
    syslog_tls_key: Path | None = None
    """PEM private key of SYSLOG_TLS_CERT."""
    syslog_tls_ca: Path | None = None
    """PEM CA certificate(s): when set, the TLS listener requires client certificates signed by them."""
    syslog_relp_port: int | None = Field(None, ge=1, le=65535)
    """TCP port for RELP (rsyslog's omrelp): each message acknowledged only once committed; unset: off."""
    syslog_service: str = Field("syslog", min_length=1, max_length=100)
    """Service of a syslog message that names no APP-NAME or tag."""
    syslog_max_message: int = Field(64 * 1024, ge=480, le=16 * 1024 * 1024)
    """Bytes of one syslog message kept; longer ones are cut there, flagged `truncated` in metadata."""
    syslog_max_connections: int = Field(1000, ge=1)
    """Syslog TCP, TLS and RELP connections per worker; more are closed as soon as they connect."""
    syslog_idle_timeout: float = Field(600.0, gt=0)
    """Seconds a syslog connection may send nothing before it is closed (senders reconnect)."""

    idempotency_ttl: float = Field(86_400, gt=0)
    """Seconds an Idempotency-Key (or a bulk document's `_id`) is remembered (app/intake/idempotency.py);
    pruned in the background after that, when the key is new again."""
    # API keys (app/auth.py; docs/limits.md). None set: no authentication. Set either and every route but
    # GET /, GET /health/ready, GET /loki/ready and the web view's page (it asks for a key) needs a key.
    api_keys: str = ""
    """Comma-separated keys that may do everything."""
    ingest_api_keys: str = ""
    """Comma-separated keys that may only send logs (POST, PUT on a bulk path, and the probes agents make
    under /elasticsearch)."""
    api_keys_secret_arn: str | None = None
    """A Secrets Manager secret holding API_KEYS and/or INGEST_API_KEYS (`{"API_KEYS": "…"}`, for Lambda),
    added to the two above."""
    elasticsearch_version: str = Field("8.9.0", pattern=r"^\d+\.\d+\.\d+$")
    """The Elasticsearch version GET /elasticsearch/ claims (app/routes/bulk.py): Filebeat, Logstash and
    Vector read it before they send, and refuse a major version they do not speak."""

    alert_interval: float = Field(60.0, gt=0)
    """Seconds between two evaluations of the alert rules (app/alerts/); one process evaluates at a time."""
    public_url: str = ""
    """The address people open the server at (`https://logs.example.com`), for the links in alert
    notifications; unset, a notification links to a path (`/ui?…`)."""

    @field_validator("log_level")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @model_validator(mode="after")
    def _syslog_tls(self) -> Self:
        if self.syslog_tls_port is not None and not (self.syslog_tls_cert and self.syslog_tls_key):
            raise ValueError("SYSLOG_TLS_PORT needs SYSLOG_TLS_CERT and SYSLOG_TLS_KEY")
        return self

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
