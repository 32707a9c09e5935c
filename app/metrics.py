"""Prometheus metrics, served by GET /metrics.

With several uvicorn workers each process counts for itself; `python -m app` then points
PROMETHEUS_MULTIPROC_DIR at a fresh directory before the workers start, prometheus-client writes every
value to a file there, and /metrics, whichever worker answers it, adds them up (its multiprocess mode).
The variable must be set before this module is first imported in a worker, which is why app/__main__.py
sets it before uvicorn spawns them.
"""

from __future__ import annotations

import os
from functools import cache

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"

LOGS_SAVED = Counter("logsave_logs_saved", "Logs committed to PostgreSQL.")
REQUESTS = Counter("logsave_requests", "HTTP requests answered, by route and status.", ["route", "status"])
REJECTED = Counter(
    "logsave_rejected",
    "Write requests not stored, by reason; `replay` is a repeat of a committed Idempotency-Key.",
    ["reason"],
)
REQUEST_DURATION = Histogram(
    "logsave_request_duration_seconds",
    "Time from the request's start to its answer, by route.",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
QUEUE_ROWS = Gauge(
    "logsave_write_queue_rows", "Rows waiting for a group commit writer.", multiprocess_mode="livesum"
)
COMMIT_ROWS = Histogram(
    "logsave_commit_rows",
    "Rows per committed COPY transaction.",
    buckets=(1, 10, 50, 100, 500, 1000, 2500, 5000, 10000, 50000),
)
# Alert notifications (app/alerts/notify.py): delivered, retry (an attempt failed, another follows), failed
# (every attempt failed), dropped (still being retried when the process stopped).
ALERT_NOTIFICATIONS = Counter(
    "logsave_alert_notifications", "Alert notifications by outcome of the delivery.", ["result"]
)
DB_ERRORS = Counter("logsave_db_errors", "Database errors met by requests, by kind.", ["kind"])
# CloudWatch Logs lines (subscription events to the Lambda, records through POST /firehose) not stored:
# `undecodable` counts a whole event or record that could not be read, `invalid` one line refused.
CLOUDWATCH_REJECTED = Counter(
    "logsave_cloudwatch_rejected",
    "CloudWatch Logs / Firehose lines not stored, by source and reason (undecodable event or record, invalid line).",
    ["source", "reason"],
)

# Syslog listeners (app/syslog/), by transport (tcp, udp, tls, relp). `dropped` counts messages read and
# not stored, by reason: a UDP datagram while PostgreSQL is away or the listener's queue is full
# (`unavailable`, `queue_full`), or rows PostgreSQL itself refused (`refused`); TCP, TLS and RELP stop
# reading instead of dropping.
SYSLOG_RECEIVED = Counter("logsave_syslog_received", "Syslog messages received, by transport.", ["transport"])
SYSLOG_STORED = Counter("logsave_syslog_stored", "Syslog messages committed, by transport.", ["transport"])
SYSLOG_TRUNCATED = Counter(
    "logsave_syslog_truncated", "Syslog messages cut at SYSLOG_MAX_MESSAGE, by transport.", ["transport"]
)
SYSLOG_UNPARSED = Counter(
    "logsave_syslog_unparsed",
    "Messages that were not syslog, stored as plain text, by transport.",
    ["transport"],
)
SYSLOG_DROPPED = Counter(
    "logsave_syslog_dropped",
    "Syslog messages read but not stored, by transport and reason.",
    ["transport", "reason"],
)

# What a refused write request counts as in logsave_rejected_total.
REASONS = {
    400: "validation",
    401: "unauthorized",
    403: "unauthorized",
    408: "too_slow",
    413: "too_large",
    415: "unsupported",
    422: "validation",
    429: "busy",
    503: "unavailable",
}


@cache
def _request_series(route: str, status: int) -> tuple[Counter, Histogram]:
    # prometheus-client's labels() takes a lock and builds a key on every call; a request needs the same
    # few series again and again (routes are the app's own, statuses few), so they are looked up once.
    return REQUESTS.labels(route=route, status=str(status)), REQUEST_DURATION.labels(route=route)


def count_request(route: str, status: int, seconds: float) -> None:
    requests, duration = _request_series(route, status)
    requests.inc()
    duration.observe(seconds)


def exposition() -> tuple[bytes, str]:
    """The text format of every metric, added up over all worker processes when there are several."""
    if os.environ.get(MULTIPROC_DIR):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
