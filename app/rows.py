"""Validated JSON bytes -> row tuples in the table's column order, ready for COPY.

Pure and database-free: everything between the request body and the writer happens here.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from pydantic import ValidationError

from app.errors import BadRequest, InvalidLogs
from app.models import KNOWN_FIELDS, batch_adapter

# Every column COPY writes, in table order (id is the sequence's, deleted is always FALSE on ingest).
COLUMNS = (
    "created_at", "level", "log_type", "service", "environment", "service_version", "trace_id",
    "user_id", "session_id", "error_type", "message", "stack_trace", "path", "method", "action_type",
    "function_name", "file_path", "duration_ms", "metadata",
)  # fmt: skip
# The table's NOT NULL defaults, applied here because COPY names every column.
DEFAULTS = {"log_type": "BACKEND", "environment": "development", "service_version": "v0.0.0-dev"}
_TEXT_COLUMNS = tuple(c for c in COLUMNS if c not in ("created_at", "duration_ms", "metadata"))

# PostgreSQL text and jsonb cannot hold U+0000; it becomes U+FFFD so the log is kept, not refused.
NUL = "\x00"
REPLACEMENT = "\ufffd"


def parse(body: bytes, max_batch_size: int, received_at: datetime | None = None) -> list[tuple[Any, ...]]:
    """Validate a `{"logs": [...]}` body and return one tuple per log, in COPY column order."""
    try:
        batch = batch_adapter(max_batch_size).validate_json(body)
    except ValidationError as exc:
        raise _to_domain_error(exc) from None
    now = received_at or datetime.now(timezone.utc)
    entries = batch["logs"]
    _move_unknown_fields_into_metadata(entries)
    return [_row(entry, now) for entry in entries]


def _row(entry: dict[str, Any], now: datetime) -> tuple[Any, ...]:
    get = entry.get
    values: dict[str, Any] = {c: get(c) for c in _TEXT_COLUMNS}
    for column, default in DEFAULTS.items():
        if values[column] is None:
            values[column] = default
    for column, value in values.items():
        if value is not None and NUL in value:
            values[column] = value.replace(NUL, REPLACEMENT)
    metadata = get("metadata")
    duration = get("duration_ms")
    return (
        get("created_at") or now,
        values["level"], values["log_type"], values["service"], values["environment"],
        values["service_version"], values["trace_id"], values["user_id"], values["session_id"],
        values["error_type"], values["message"], values["stack_trace"], values["path"],
        values["method"], values["action_type"], values["function_name"], values["file_path"],
        None if duration is None else round(duration, 3),
        None if metadata is None else _jsonb(metadata),
    )  # fmt: skip


def _jsonb(value: dict[str, Any]) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    # JSON escapes U+0000 as \u0000, which jsonb refuses; rebuild without it only when it is there.
    if "\\u0000" in text:
        text = json.dumps(_strip_nul(value), ensure_ascii=False, separators=(",", ":"))
    return text


def _strip_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace(NUL, REPLACEMENT)
    if isinstance(value, dict):
        return {_strip_nul(k): _strip_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_nul(v) for v in value]
    return value


def _move_unknown_fields_into_metadata(entries: list[dict[str, Any]]) -> None:
    errors = []
    for index, entry in enumerate(entries):
        unknown = entry.keys() - KNOWN_FIELDS
        if not unknown:
            continue
        metadata = entry.get("metadata") or {}
        for name in sorted(unknown):
            if name in metadata:
                errors.append(
                    {
                        "field": f"logs.{index}.{name}",
                        "message": f"unknown field {name!r} is stored in metadata, which already has that key",
                        "type": "metadata_conflict",
                    }
                )
            else:
                metadata[name] = entry.pop(name)
        entry["metadata"] = metadata
    if errors:
        raise InvalidLogs(errors)


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
