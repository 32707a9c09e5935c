"""One queued log -> the JSON of one entry of POST /logs, made on the sender thread.

Everything here is defensive: whatever an application passes (objects JSON cannot hold, NaN, keys that
are not strings, megabytes of text, metadata nested a thousand deep), the entry that comes out is valid
JSON the server accepts, so one odd log never turns a batch into a 422.
"""

from __future__ import annotations

import json
import logging
import math
import traceback
from typing import Any

# The server's columns and their length limits (docs/send-apps.md, "POST /logs"); longer text is cut to fit.
LIMITS = {
    "service": 100, "service_version": 50, "trace_id": 32, "user_id": 255, "session_id": 100,
    "error_type": 200, "path": 500, "action_type": 50, "function_name": 300, "file_path": 1000,
}  # fmt: skip
COLUMNS = frozenset(LIMITS) | {
    "log_type",
    "environment",
    "method",
    "duration_ms",
    "created_at",
    "stack_trace",
}
LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
_ALIASES = {"WARNING": "WARN", "CRITICAL": "FATAL", "EXCEPTION": "ERROR", "NOTSET": "TRACE"}
# Attributes every LogRecord has: anything else on a record came from `extra=`.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
MAX_REPR = 1000
MAX_DEPTH = 32  # the server allows 64 levels of metadata; a value deeper than this becomes its repr


def level_name(level: int | str) -> tuple[str, str | None]:
    """The server's level for a Python level number or name, and the original when it had to be mapped."""
    if isinstance(level, int):
        for bound, name in ((5, "TRACE"), (10, "DEBUG"), (20, "INFO"), (30, "WARN"), (40, "ERROR")):
            if level <= bound:
                return name, None
        return "FATAL", None
    name = str(level).strip().upper()
    name = _ALIASES.get(name, name)
    return (name, None) if name in LEVELS else ("INFO", str(level))


def from_call(
    created: float, level: int | str, message: Any, fields: dict[str, Any], defaults: dict[str, Any]
) -> dict[str, Any]:
    """LogClient.log(level, message, **fields): known columns stay columns, the rest goes to metadata."""
    name, original = level_name(level)
    entry: dict[str, Any] = {**defaults, "level": name, "message": str(message), "created_at": created}
    metadata: dict[str, Any] = dict(fields.pop("metadata", None) or {})
    for key, value in fields.items():
        if key in COLUMNS:
            entry[key] = value
        else:
            metadata[key] = value
    if original is not None:
        metadata["level"] = original
    if metadata:
        entry["metadata"] = metadata
    return entry


def from_record(record: logging.LogRecord, message: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """A logging.LogRecord: its time, level, message, function and file, exception, and `extra=` fields."""
    fields = {
        key: value
        for key, value in record.__dict__.items()
        if key not in _STANDARD and not key.startswith("_")
    }
    fields.setdefault("function_name", record.funcName)
    fields.setdefault("file_path", record.pathname)
    if record.exc_info and record.exc_info[0] is not None:
        kind, value, tb = record.exc_info
        fields.setdefault("error_type", kind.__name__)
        fields.setdefault("stack_trace", "".join(traceback.format_exception(kind, value, tb)))
    elif record.stack_info:
        fields.setdefault("stack_trace", record.stack_info)
    metadata = dict(fields.pop("metadata", None) or {})
    metadata.setdefault("logger", record.name)
    return from_call(record.created, record.levelno, message, {**fields, "metadata": metadata}, defaults)


def encode(entry: dict[str, Any], max_bytes: int) -> tuple[bytes, bool]:
    """The entry as JSON bytes, and whether it had to be cut to `max_bytes`."""
    for key, limit in LIMITS.items():
        value = entry.get(key)
        if isinstance(value, str) and len(value) > limit:
            entry[key] = value[:limit]
    for key in COLUMNS - {"created_at", "duration_ms"}:
        value = entry.get(key)
        if value is not None and not isinstance(value, str):
            entry[key] = _repr(value)
    if not isinstance(entry.get("created_at"), (int, float)) or not math.isfinite(entry["created_at"]):
        entry.pop("created_at", None)
    duration = entry.get("duration_ms")
    if duration is not None and not (isinstance(duration, (int, float)) and 0 <= duration <= 9_999_999.999):
        entry.setdefault("metadata", {})["duration_ms"] = _repr(duration)
        entry.pop("duration_ms")
    if "metadata" in entry:
        entry["metadata"] = _safe(entry["metadata"], 1)
    raw = _dumps(entry)
    if len(raw) <= max_bytes:
        return raw, False
    return _cut(entry, max_bytes), True


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode(
        "utf-8", "replace"
    )


def _repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # noqa: BLE001 - a broken __repr__ must not lose the log
        text = f"<unrepresentable {type(value).__name__}: {type(exc).__name__}>"
    return text if len(text) <= MAX_REPR else text[:MAX_REPR] + "…"


def _safe(value: Any, depth: int) -> Any:
    """`value` with everything JSON cannot hold (or the server refuses) replaced by a capped repr."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _repr(value)
    if depth > MAX_DEPTH:
        return _repr(value)
    if isinstance(value, dict):
        return {k if isinstance(k, str) else _repr(k): _safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_safe(v, depth + 1) for v in value]
    return _repr(value)


def _cut(entry: dict[str, Any], max_bytes: int) -> bytes:
    """An entry over `max_bytes`: its long texts shortened, its metadata replaced by a note if need be."""
    budget = max(1000, max_bytes // 3)
    for key in ("message", "stack_trace"):
        text = entry.get(key)
        if isinstance(text, str) and len(text) > budget:
            entry[key] = text[:budget] + f"… [cut by logsave: {len(text)} characters]"
    raw = _dumps(entry)
    if len(raw) > max_bytes and "metadata" in entry:
        entry["metadata"] = {"logsave_cut": _repr(entry["metadata"])}
        raw = _dumps(entry)
    return raw
