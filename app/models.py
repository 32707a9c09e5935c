"""The request and response schema: what POST /logs accepts, and what every endpoint answers.

`LogEntry` is the documented schema: it generates the OpenAPI document and every 422 message. It is a
TypedDict, so pydantic validates JSON bytes straight into plain dicts. `RawLogEntry` mirrors it for the
fast first pass of app/intake/rows.py (see there, and tests/benchmarks/ for what each costs).
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any, Literal, NotRequired

import msgspec
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    TypeAdapter,
    WithJsonSchema,
    with_config,
)
from typing_extensions import TypedDict

LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
# Python's logging names two levels differently; accept them and store the canonical name.
LEVEL_ALIASES = {"WARNING": "WARN", "CRITICAL": "FATAL"}
LOG_TYPES = ("BACKEND", "FRONTEND", "MOBILE", "IOT", "WORKER")
ENVIRONMENTS = ("production", "staging", "development", "test", "local")
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")

# created_at as a number: Unix time whose unit is read from its magnitude. For any date from 1973 to 2286
# the four units fall in ranges that do not overlap, so the rule below reads each one right:
#   below 1e11 seconds (up to the year 5138), below 1e14 milliseconds (JavaScript's Date.now()),
#   below 1e17 microseconds, below 1e20 nanoseconds (OpenTelemetry, Go's UnixNano()).
EPOCH_UNITS = ((1e11, 1), (1e14, 1e3), (1e17, 1e6), (1e20, 1e9))
MAX_EPOCH = EPOCH_UNITS[-1][0]
SECONDS_BELOW = EPOCH_UNITS[0][0]


def normalize_level(value: Any) -> Any:
    if isinstance(value, str):
        upper = value.strip().upper()
        return LEVEL_ALIASES.get(upper, upper)
    return value


def upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def parse_created_at(value: Any) -> datetime:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return from_epoch(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                "must be Unix seconds or an RFC 3339 timestamp such as 2026-11-27T12:00:00.123Z"
            ) from None
        if parsed.tzinfo is None:
            raise ValueError("RFC 3339 timestamps need a UTC offset (Z or +hh:mm)")
        return in_range(parsed)
    raise ValueError("must be Unix seconds (a number) or an RFC 3339 string")


def in_range(moment: datetime) -> datetime:
    """`moment` (with an offset) if it is also a time in UTC: 0001-01-01T00:00:00+01:00 is not, and
    converting it (as the driver does to send it to PostgreSQL) overflows. Only the first and last year
    can be out, so only those are converted (the check is on every created_at string)."""
    if moment.year in (1, 9999):
        try:
            moment.astimezone(UTC)
        except OverflowError:
            raise ValueError(
                f"{moment.isoformat()} is outside 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999Z"
            ) from None
    return moment


def from_epoch(value: float) -> datetime:
    """A Unix time in seconds, milliseconds, microseconds or nanoseconds, told apart by magnitude."""
    if 0 <= value < SECONDS_BELOW:  # seconds, the common case, without the search below (hot path)
        return datetime.fromtimestamp(value, UTC)
    # One comparison for all: NaN compares false, and an integer too large for a float compares exactly.
    if not 0 <= value < MAX_EPOCH:
        raise ValueError(
            "a Unix time must be a finite number from 0 (1970) below 1e20: seconds, milliseconds, "
            "microseconds or nanoseconds, told apart by magnitude"
        )
    per_second = next(per_second for bound, per_second in EPOCH_UNITS if value < bound)
    return datetime.fromtimestamp(value / per_second, UTC)


def _text(max_length: int) -> Any:
    return Annotated[str, StringConstraints(max_length=max_length)]


Level = Annotated[Literal[LEVELS], BeforeValidator(normalize_level)]  # type: ignore[valid-type]
LogType = Annotated[Literal[LOG_TYPES], BeforeValidator(upper)]  # type: ignore[valid-type]
Environment = Annotated[Literal[ENVIRONMENTS], BeforeValidator(lower)]  # type: ignore[valid-type]
Method = Annotated[Literal[METHODS], BeforeValidator(upper)]  # type: ignore[valid-type]
CreatedAt = Annotated[
    datetime,
    PlainValidator(parse_created_at),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "exclusiveMaximum": MAX_EPOCH},
                {"type": "string", "format": "date-time"},
            ],
            "description": "Unix time in seconds, milliseconds, microseconds or nanoseconds (told apart by "
            "magnitude: below 1e11 seconds, 1e14 ms, 1e17 µs, 1e20 ns), or RFC 3339 with an offset. "
            "Absent: the time the server received it.",
        }
    ),
]
DurationMs = Annotated[float, Field(strict=True, ge=0, le=9_999_999.999, allow_inf_nan=False)]


@with_config(ConfigDict(extra="allow"))
class LogEntry(TypedDict):
    """One log. Fields not listed here are kept inside `metadata` under their own names."""

    level: Level
    service: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    message: str
    created_at: NotRequired[CreatedAt | None]
    log_type: NotRequired[LogType | None]
    environment: NotRequired[Environment | None]
    service_version: NotRequired[_text(50) | None]
    trace_id: NotRequired[_text(32) | None]
    user_id: NotRequired[_text(255) | None]
    session_id: NotRequired[_text(100) | None]
    error_type: NotRequired[_text(200) | None]
    stack_trace: NotRequired[str | None]
    path: NotRequired[_text(500) | None]
    method: NotRequired[Method | None]
    action_type: NotRequired[_text(50) | None]
    function_name: NotRequired[_text(300) | None]
    file_path: NotRequired[_text(1000) | None]
    duration_ms: NotRequired[DurationMs | None]
    metadata: NotRequired[dict[str, Any] | None]


# Names of the fields above, i.e. everything that is not an "unknown field" destined for metadata.
KNOWN_FIELDS = frozenset(LogEntry.__annotations__)


def _limit(max_length: int, min_length: int = 0) -> Any:
    return Annotated[str, msgspec.Meta(min_length=min_length, max_length=max_length)]


class RawLogEntry(msgspec.Struct, forbid_unknown_fields=True):
    """LogEntry for the fast first pass of app/intake/rows.py, decoded by msgspec in C: the same fields in the
    same order with the same limits, minus the checks that need Python (enum spellings, created_at), which
    rows.py finishes with LogEntry's own functions. Unknown fields are refused here: such a body takes the
    second pass, through LogEntry, which keeps them."""

    level: str
    service: _limit(100, min_length=1)
    message: str
    created_at: float | str | None = None
    log_type: str | None = None
    environment: str | None = None
    service_version: _limit(50) | None = None
    trace_id: _limit(32) | None = None
    user_id: _limit(255) | None = None
    session_id: _limit(100) | None = None
    error_type: _limit(200) | None = None
    stack_trace: str | None = None
    path: _limit(500) | None = None
    method: str | None = None
    action_type: _limit(50) | None = None
    function_name: _limit(300) | None = None
    file_path: _limit(1000) | None = None
    duration_ms: Annotated[float, msgspec.Meta(ge=0, le=9_999_999.999)] | None = None
    metadata: dict[str, Any] | None = None


class RawLogBatch(msgspec.Struct, forbid_unknown_fields=True):
    logs: list[RawLogEntry]


# Both passes hand rows.py the fields in this order.
FIELDS = tuple(LogEntry.__annotations__)
assert RawLogEntry.__struct_fields__ == FIELDS


@lru_cache
def batch_adapter(max_batch_size: int) -> TypeAdapter[Any]:
    """A validator for `{"logs": [...]}` holding 1 to `max_batch_size` entries, built once per size."""

    @with_config(ConfigDict(extra="forbid"))
    class LogBatch(TypedDict):
        logs: Annotated[list[LogEntry], Field(min_length=1, max_length=max_batch_size)]

    return TypeAdapter(LogBatch)


class RejectedEntry(BaseModel):
    index: int = Field(description="The entry's position in `logs`, from 0.")
    field: str = Field(description="Where the problem is, e.g. `logs.2.level`.")
    message: str
    type: str


class IngestResult(BaseModel):
    saved: int = Field(description="How many logs were committed to PostgreSQL.")
    status: Literal["success", "partial"] = Field(
        "success", description="`partial` only with `?partial=true` when some entries were rejected."
    )
    rejected: list[RejectedEntry] | None = Field(
        None, description="With `?partial=true`: each error of the entries that were not stored."
    )


class StoredLog(BaseModel):
    """One log as GET /logs and GET /traces/{id} answer it: every column but the soft-delete flag."""

    id: int
    created_at: str = Field(description="RFC 3339, UTC, microseconds.")
    level: str
    log_type: str
    service: str
    environment: str
    service_version: str
    trace_id: str | None
    user_id: str | None
    session_id: str | None
    error_type: str | None
    message: str
    stack_trace: str | None
    path: str | None
    method: str | None
    action_type: str | None
    function_name: str | None
    file_path: str | None
    duration_ms: float | None
    metadata: dict[str, Any] | None


class LogPage(BaseModel):
    logs: list[StoredLog] = Field(description="Newest first.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class TraceLogs(BaseModel):
    trace_id: str
    logs: list[StoredLog] = Field(description="In time order, at most 10,000.")


class ServiceCount(BaseModel):
    service: str
    count: int


class Stats(BaseModel):
    total_logs: int
    services: list[ServiceCount] = Field(description="Largest first.")
    by_level: dict[str, int]
    recent_24h: int = Field(description="Logs whose created_at falls in the last 24 hours.")


class TimelinePoint(BaseModel):
    at: str = Field(description="Start of the bucket, RFC 3339.")
    counts: dict[str, int] = Field(description="Logs by level in the bucket.")


class Timeline(BaseModel):
    bucket: Literal["minute", "hour"]
    points: list[TimelinePoint] = Field(description="Buckets with at least one log, oldest first.")


class FacetValue(BaseModel):
    value: str = Field(description="As a GET /logs filter takes it (numbers and booleans as JSON text).")
    count: int


class Facet(BaseModel):
    field: str = Field(description="The GET /logs parameter it filters: `service`, `level`, `meta.region`, …")
    exact: bool = Field(description="Counted over the whole range (true) or over the sample (false).")
    count: int = Field(description="Logs with this field (of the range, or of the sample).")
    values: list[FacetValue] = Field(description="Most frequent first.")


class Facets(BaseModel):
    since: str
    until: str
    sampled: int = Field(description="How many logs (the newest matching ones) the inexact facets counted.")
    facets: list[Facet] = Field(description="service, level, environment, then the most seen metadata paths.")


class Health(BaseModel):
    status: Literal["healthy"] = "healthy"
    service: str = "log-save-server"
    version: str


class FieldError(BaseModel):
    field: str = Field(description="Where the problem is, e.g. `logs.2.level`.")
    message: str
    type: str


class ErrorBody(BaseModel):
    error: str = Field(description="A stable code, e.g. `validation_failed`.")
    message: str = Field(description="What is wrong, for a person.")
    errors: list[FieldError] | None = Field(None, description="422 only: each invalid field (first 100).")
    error_count: int | None = Field(None, description="422 only: how many fields were invalid in all.")
