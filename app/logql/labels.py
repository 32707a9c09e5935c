"""A stored log as LogQL sees it: stream labels, structured metadata, the line and its time.

A log's stream labels are service_name, level (lower case, as Grafana's level colours and clients'
`level=~"error|fatal"` expect) and environment. Its other non-null fields and the scalar values at the top
of its metadata are structured metadata, as is detected_level (Loki 3 adds it to every log). Its line is
its message.

A log pushed through Loki's push API reads back as Loki returns it: the labels it was pushed with
(service_name added when none was), the structured metadata it was pushed with and detected_level, and the
line as pushed (loki_labels, loki_metadata, loki_line: app/formats/loki.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

STREAM = ("service_name", "level", "environment")
# Our columns that are structured metadata, in the order rows carry them (ROW_PG / ROW_DUCKDB).
METADATA_COLUMNS = ("trace_id", "user_id", "session_id", "path", "method", "log_type", "service_version",
                    "error_type", "duration_ms")  # fmt: skip
ROW_PG = (
    "(extract(epoch FROM created_at) * 1000000)::bigint AS us, id, service, lower(level::text),"
    " environment::text, trace_id, user_id, session_id, path, method::text, log_type::text, service_version,"
    " error_type, trim_scale(duration_ms)::text, message, metadata::text, loki_labels::text,"
    " loki_metadata::text, loki_line"
)
ROW_DUCKDB = (
    "epoch_us(created_at) AS us, id, service, lower(level), environment, trace_id, user_id, session_id, path,"
    " method, log_type, service_version, error_type, rtrim(rtrim(duration_ms::VARCHAR, '0'), '.'), message, metadata,"
    " loki_labels, loki_metadata, loki_line"
)
_INVALID = re.compile(r"[^A-Za-z0-9_]")


@dataclass
class Entry:
    """One log line going through a pipeline: `parsed` holds what parsers and label_format added."""

    ns: int
    line: str
    stream: dict[str, str]
    metadata: dict[str, str]
    parsed: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> str | None:
        for labels in (self.parsed, self.metadata, self.stream):
            if name in labels:
                return labels[name]
        return None

    def labels(self) -> dict[str, str]:
        return {**self.stream, **self.metadata, **self.parsed}

    def has(self, name: str) -> bool:
        return name in self.parsed or name in self.metadata or name in self.stream

    def remove(self, name: str) -> None:
        for labels in (self.parsed, self.metadata, self.stream):
            labels.pop(name, None)


def sanitize(name: str) -> str:
    """A key as a label name (Loki replaces every character a label name cannot hold with `_`)."""
    cleaned = _INVALID.sub("_", name)
    return "_" + cleaned if cleaned[:1].isdigit() else cleaned


def entry(row: tuple[Any, ...]) -> Entry:
    """A row of ROW_PG/ROW_DUCKDB as an Entry."""
    us, _id, service, level, environment, *columns, message, metadata_text, pushed, structured, line = row
    if pushed is not None:
        return pushed_entry(us * 1000, level, pushed, structured, message if line is None else line)
    stream = {"service_name": service, "level": level, "environment": environment}
    metadata: dict[str, str] = {}
    if metadata_text:
        document = orjson.loads(metadata_text)
        if isinstance(document, dict):
            for key, value in document.items():
                text = label_value(value)
                if text is not None and key:
                    metadata[sanitize(key)] = text
    for name, value in zip(METADATA_COLUMNS, columns, strict=True):
        if value is not None:
            metadata[name] = value
    metadata["detected_level"] = level
    return Entry(us * 1000, message, stream, metadata)


def pushed_entry(ns: int, level: str, pushed: str, structured: str | None, line: str) -> Entry:
    """A log pushed through Loki's push API: its labels and structured metadata as pushed, detected_level
    (pushed, or its level) and its line."""
    metadata = orjson.loads(structured) if structured else {}
    metadata.setdefault("detected_level", level)
    return Entry(ns, line, orjson.loads(pushed), metadata)


def pushed_labels(pushed: str, structured: str | None, level: str) -> dict[str, str]:
    """A pushed log's labels as a metric result groups them (stream labels, structured metadata)."""
    labels = {**orjson.loads(structured), **orjson.loads(pushed)} if structured else orjson.loads(pushed)
    labels.setdefault("detected_level", level)
    return labels


def label_value(value: Any) -> str | None:
    """A JSON value as a label value: strings as they are, numbers and booleans as JSON writes them;
    objects, arrays and null are not labels."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return orjson.dumps(value).decode()
    return None
