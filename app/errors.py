"""Domain errors, and the one place they become HTTP answers.

    IngestError                      (status, code, message)
    ├── BadRequest                   400 malformed JSON, bad compressed data, not UTF-8, bad Idempotency-Key
    ├── Unauthorized                 401 + WWW-Authenticate: API keys are set and none (or a wrong one) was sent
    ├── Forbidden                    403 an ingest-only key on a read route
    ├── RequestTimeout               408 the body stalled, or arrived slower than BODY_MIN_RATE
    ├── PayloadTooLarge              413 body over MAX_BODY_BYTES, on the wire or once expanded
    ├── UnsupportedMediaType         415 Content-Type or Content-Encoding we do not take
    ├── InvalidLogs                  422 per-field validation errors, each named like `logs.2.level`
    ├── IdempotencyKeyReused         422 an Idempotency-Key already used with another body
    ├── InvalidQuery                 422 a GET /logs filter that is unknown or malformed, named like `query.since`
    ├── InvalidRule                  422 an alert rule that cannot work, each bad field named like `notify.0`
    ├── NotFound                     404 no such alert rule
    ├── QueryTimeout                 422 a query that ran past QUERY_TIMEOUT: narrow it
    ├── ArchiveUnreadable            422 archived days asked of a deployment without pyarrow/duckdb (Lambda)
    ├── Busy                         429 + Retry-After: the write queue is full (the server is busy, not down)
    ├── ServiceUnavailable           503 + Retry-After: PostgreSQL unreachable, or the server shutting down
    └── DatabaseNotConfigured        500 a deployment without a database (Lambda never embeds one)

Every error body has the same shape: {"error": code, "message": text} (+ "errors" for 422).
"""

from __future__ import annotations

from typing import Any, ClassVar


class IngestError(Exception):
    status = 500
    code = "internal_error"
    headers: ClassVar[dict[str, str]] = {}

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message}


class BadRequest(IngestError):
    status = 400
    code = "bad_request"


class RequestTimeout(IngestError):
    status = 408
    code = "request_timeout"
    # The rest of the body may still be on its way: the connection cannot be reused.
    headers: ClassVar[dict[str, str]] = {"Connection": "close"}


class PayloadTooLarge(IngestError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(IngestError):
    status = 415
    code = "unsupported_media_type"


class InvalidLogs(IngestError):
    status = 422
    code = "validation_failed"
    # A batch of 1000 bad entries would otherwise answer with a megabyte of errors.
    max_listed = 100

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        listed = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:3])
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        super().__init__(f"{len(errors)} invalid field(s): {listed}{more}")

    def body(self) -> dict[str, Any]:
        return {**super().body(), "errors": self.errors[: self.max_listed], "error_count": len(self.errors)}


class InvalidQuery(InvalidLogs):
    code = "invalid_query"


class InvalidRule(InvalidLogs):
    code = "invalid_rule"


class NotFound(IngestError):
    status = 404
    code = "not_found"


class ArchiveUnreadable(IngestError):
    """The logs asked for are archived and this deployment cannot read the archive (Lambda)."""

    status = 422
    code = "archive_unreadable"


class QueryTimeout(IngestError):
    status = 422
    code = "query_timeout"


class Unauthorized(IngestError):
    status = 401
    code = "unauthorized"
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": "Bearer"}


class Forbidden(IngestError):
    status = 403
    code = "forbidden"


class IdempotencyKeyReused(IngestError):
    status = 422
    code = "idempotency_key_reused"


class _RetryLater(IngestError):
    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.headers = {"Retry-After": str(retry_after)}  # type: ignore[misc]


class Busy(_RetryLater):
    status = 429
    code = "too_many_requests"


class ServiceUnavailable(_RetryLater):
    status = 503
    code = "service_unavailable"


class DatabaseNotConfigured(IngestError):
    status = 500
    code = "database_not_configured"
