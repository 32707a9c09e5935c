"""Validated JSON bytes -> row tuples in the table's column order, ready for COPY.

Pure and database-free: everything between the request body and the writer happens here.

Two passes, one set of rules. The first validates the body with `RawLogEntry`, all in pydantic's Rust
core, and finishes the few checks that need Python (enum spellings, created_at) while building rows, with
the same functions the documented schema `LogEntry` uses. Only when that finds a problem does the body go
through `LogEntry`, whose errors name every bad field; bad input is rare, so its cost does not matter.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import orjson
from pydantic import ValidationError

from app.errors import BadRequest, InvalidLogs
from app.models import (
    ENVIRONMENTS,
    KNOWN_FIELDS,
    LEVEL_ALIASES,
    LEVELS,
    LOG_TYPES,
    METHODS,
    _lower,
    _normalize_level,
    _parse_created_at,
    _upper,
    batch_adapter,
)

# Every column COPY writes, in table order (id is the sequence's, deleted is always FALSE on ingest).
COLUMNS = (
    "created_at", "level", "log_type", "service", "environment", "service_version", "trace_id",
    "user_id", "session_id", "error_type", "message", "stack_trace", "path", "method", "action_type",
    "function_name", "file_path", "duration_ms", "metadata",
)  # fmt: skip
# The table's NOT NULL defaults, applied here because COPY names every column.
DEFAULTS = {"log_type": "BACKEND", "environment": "development", "service_version": "v0.0.0-dev"}
_STRINGS = ("service", "service_version", "trace_id", "user_id", "session_id", "error_type", "message",
            "stack_trace", "path", "action_type", "function_name", "file_path")  # fmt: skip

# PostgreSQL text and jsonb cannot hold U+0000; it becomes U+FFFD so the log is kept, not refused.
NUL = "\x00"
REPLACEMENT = "\ufffd"
# Raw NUL bytes are invalid JSON, so a string can only hold U+0000 if the body has this escape in it.
_NUL_ESCAPE = b"\\u0000"

_LEVELS = {**{level: level for level in LEVELS}, **LEVEL_ALIASES}
_LOG_TYPES = {value: value for value in LOG_TYPES}
_ENVIRONMENTS = {value: value for value in ENVIRONMENTS}
_METHODS = {value: value for value in METHODS}

Row = tuple[Any, ...]


class _Recheck(Exception):
    """The first pass met a value only the documented schema can explain: validate again with it."""


def parse(body: bytes, max_batch_size: int, received_at: datetime | None = None) -> list[Row]:
    """Validate a `{"logs": [...]}` body and return one tuple per log, in COPY column order."""
    now = received_at or datetime.now(timezone.utc)
    strip_nul = _NUL_ESCAPE in body
    try:
        entries = batch_adapter(max_batch_size, raw=True).validate_json(body)["logs"]
        return _rows(entries, now, strip_nul)
    except (ValidationError, _Recheck):
        pass
    try:
        entries = batch_adapter(max_batch_size).validate_json(body)["logs"]
    except ValidationError as exc:
        raise _to_domain_error(exc) from None
    # The documented schema accepted what the first pass did not (e.g. a level padded with an exotic
    # whitespace character): its output is already normalized, and builds rows the same way.
    return _rows(entries, now, strip_nul)


def _rows(entries: list[dict[str, Any]], now: datetime, strip_nul: bool) -> list[Row]:
    rows = []
    errors = []
    for index, entry in enumerate(entries):
        try:
            rows.append(_row(entry, now, strip_nul))
        except _MetadataProblem as problem:
            errors.append({"field": f"logs.{index}.{problem.field}", "message": problem.message, "type": problem.kind})
    if errors:
        raise InvalidLogs(errors)
    return rows


class _MetadataProblem(Exception):
    def __init__(self, field: str, message: str, kind: str) -> None:
        self.field, self.message, self.kind = field, message, kind


def _enum(value: Any, allowed: dict[str, str], normalize: Callable[[Any], Any]) -> str:
    canonical = allowed.get(value)
    if canonical is None:
        canonical = allowed.get(normalize(value))
        if canonical is None:
            raise _Recheck
    return canonical


def _row(entry: dict[str, Any], now: datetime, strip_nul: bool) -> Row:
    get = entry.get
    created_at = get("created_at")
    if created_at is None:
        created_at = now
    elif type(created_at) is not datetime:
        try:
            created_at = _parse_created_at(created_at)
        except ValueError:
            raise _Recheck from None
    log_type, environment, method = get("log_type"), get("environment"), get("method")
    duration = get("duration_ms")
    metadata = _metadata(entry)
    values = [get(name) for name in _STRINGS]
    if strip_nul:
        values = [v.replace(NUL, REPLACEMENT) if v is not None and NUL in v else v for v in values]
        if metadata is not None:
            metadata = _strip_nul(metadata)
    (service, service_version, trace_id, user_id, session_id, error_type, message, stack_trace, path,
     action_type, function_name, file_path) = values  # fmt: skip
    return (
        created_at,
        _enum(entry["level"], _LEVELS, _normalize_level),
        DEFAULTS["log_type"] if log_type is None else _enum(log_type, _LOG_TYPES, _upper),
        service,
        DEFAULTS["environment"] if environment is None else _enum(environment, _ENVIRONMENTS, _lower),
        DEFAULTS["service_version"] if service_version is None else service_version,
        trace_id, user_id, session_id, error_type, message, stack_trace, path,
        None if method is None else _enum(method, _METHODS, _upper),
        action_type, function_name, file_path,
        None if duration is None else round(duration, 3),
        None if metadata is None else _jsonb(metadata),
    )  # fmt: skip


def _metadata(entry: dict[str, Any]) -> dict[str, Any] | None:
    """The entry's metadata with its unknown top-level fields moved in, under their own names."""
    metadata = entry.get("metadata")
    unknown = entry.keys() - KNOWN_FIELDS
    if unknown:
        metadata = dict(metadata or {})
        for name in sorted(unknown):
            if name in metadata:
                raise _MetadataProblem(
                    name, f"unknown field {name!r} is stored in metadata, which already has that key", "metadata_conflict"
                )
            metadata[name] = entry[name]
    return metadata


def _jsonb(value: dict[str, Any]) -> str:
    try:
        text = orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        # orjson stops at integers beyond 64 bits; jsonb takes any size.
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    # pydantic reads NaN, Infinity and numbers beyond 1.8e308 as floats JSON cannot hold, which orjson
    # writes as null. Only output with a null in it can hide one: check those strictly.
    if "null" in text:
        try:
            json.dumps(value, allow_nan=False)
        except ValueError:
            raise _MetadataProblem(
                "metadata", "NaN, Infinity and numbers beyond ±1.8e308 cannot be stored as JSON", "json_non_finite"
            ) from None
    return text


def _strip_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace(NUL, REPLACEMENT)
    if isinstance(value, dict):
        return {_strip_nul(k): _strip_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_nul(v) for v in value]
    return value


def _to_domain_error(exc: ValidationError) -> BadRequest | InvalidLogs:
    details = exc.errors(include_url=False, include_input=False)
    for detail in details:
        if detail["type"] == "json_invalid":
            reason = detail.get("ctx", {}).get("error", detail["msg"])
            kind = "UTF-8 " if "unicode" in reason else ""
            return BadRequest(f"body is not valid {kind}JSON: {reason}")
    return InvalidLogs(
        [
            {
                "field": ".".join(str(part) for part in detail["loc"]) or "body",
                "message": detail["msg"],
                "type": detail["type"],
            }
            for detail in details
        ]
    )
