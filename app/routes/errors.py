"""The error answers routes document in OpenAPI (the bodies are app/errors.py's)."""

from __future__ import annotations

from typing import Any

from app.models import ErrorBody

_RETRY = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait before retrying."}}

RESPONSES: dict[int, dict[str, Any]] = {
    400: {
        "model": ErrorBody,
        "description": "Malformed JSON, bad or truncated compressed data, not UTF-8, or a bad Idempotency-Key.",
    },
    401: {"model": ErrorBody, "description": "API keys are configured and none, or a wrong one, was sent."},
    403: {"model": ErrorBody, "description": "An ingest-only API key on a read route."},
    408: {
        "model": ErrorBody,
        "description": "The body stalled for BODY_READ_TIMEOUT seconds, or arrived slower than BODY_MIN_RATE.",
    },
    413: {
        "model": ErrorBody,
        "description": "Body over MAX_BODY_BYTES (on the wire or once decompressed), or with more than "
        "200,000 JSON objects and arrays.",
    },
    415: {
        "model": ErrorBody,
        "description": "A Content-Type the route does not read (POST /logs: application/json or NDJSON; "
        "POST /v1/logs: application/x-protobuf or application/json), or an unknown Content-Encoding.",
    },
    422: {
        "model": ErrorBody,
        "description": "Invalid entries, each bad field named (e.g. `logs.2.level`); or an Idempotency-Key "
        "reused with another body (`idempotency_key_reused`).",
    },
    429: {
        "model": ErrorBody,
        "description": "The write queue is full, or the worker holds BODY_MEMORY_LIMIT bytes of bodies: the "
        "server is busy. Nothing was stored; retry after Retry-After.",
        "headers": _RETRY,
    },
    503: {
        "model": ErrorBody,
        "description": "PostgreSQL unreachable (or the server shutting down). Nothing was stored; retry later.",
        "headers": _RETRY,
    },
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: RESPONSES[status] for status in statuses}
