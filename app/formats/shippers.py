"""What log shippers send to POST /logs besides our own `{"logs": [...]}`: a top-level JSON array of log
objects, or NDJSON (one object per line), with their own field names, and defaults from the query string.

    aliases     msg, log -> message;  timestamp, time, date, @timestamp -> created_at;  severity -> level
                (only where the entry lacks the field itself; the alias is then not kept in metadata)
    defaults    ?service=web&level=INFO&environment=production&log_type=WORKER&service_version=1.2
                fill in what a shipper cannot set (an entry's own value wins)

Every shape ends as the native body, validated by app/intake/rows.py like any other.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from app.errors import BadRequest, InvalidQuery
from app.intake.rows import BOM
from app.models import ENVIRONMENTS, LEVELS, LOG_TYPES, LogEntry

ALIASES = {
    "message": ("msg", "log"),
    "created_at": ("timestamp", "@timestamp", "time", "date"),
    "level": ("severity",),
}
DEFAULTS = ("service", "level", "environment", "log_type", "service_version")
QUERY = frozenset(DEFAULTS) | {"partial"}
_ENTRY = TypeAdapter(LogEntry)


def defaults(params: Mapping[str, str]) -> dict[str, str]:
    """The query string's defaults; 400 for a parameter POST /logs does not know."""
    unknown = sorted(set(params) - QUERY)
    if unknown:
        raise BadRequest(f"unknown query parameter(s) {unknown}: POST /logs takes {', '.join(sorted(QUERY))}")
    return checked({name: params[name] for name in DEFAULTS if name in params})


def checked(values: dict[str, str]) -> dict[str, str]:
    """`values`, query defaults, or a 422 naming each one no log could take (`query.service_version`: over 50
    characters; `query.level`: not a level). Checked up front, as the document states them: a wrong URL is
    wrong for every request, also one whose entries all bring their own value or that has no entry."""
    if not values:
        return values
    try:
        _ENTRY.validate_python({"level": "INFO", "service": "-", "message": "", **values})
    except ValidationError as exc:
        details = exc.errors(include_url=False, include_input=False)
        errors = [
            {"field": f"query.{detail['loc'][0]}", "message": detail["msg"], "type": detail["type"]}
            for detail in details
            if detail["loc"] and detail["loc"][0] in values
        ]
        if errors:
            raise InvalidQuery(errors) from None
    return values


# The defaults as the OpenAPI document states them (POST /logs, POST /firehose): what `checked` takes.
_SCHEMAS: dict[str, dict[str, Any]] = {
    "service": {"type": "string", "minLength": 1, "maxLength": 100},
    "level": {"enum": list(LEVELS), "description": "Case-insensitive; WARNING and CRITICAL are taken too."},
    "environment": {"enum": list(ENVIRONMENTS), "description": "Case-insensitive."},
    "log_type": {"enum": list(LOG_TYPES), "description": "Case-insensitive."},
    "service_version": {"type": "string", "maxLength": 50},
}
PARAMETERS = [
    {
        "name": name,
        "in": "query",
        "required": False,
        "description": f"Default `{name}` for entries that have none (for senders that cannot set it).",
        "schema": _SCHEMAS[name],
    }
    for name in DEFAULTS
]


def native(body: bytes, ndjson: bool, defaults: dict[str, str]) -> bytes:
    """`body` as `{"logs": [...]}`: itself when it already is one and there is nothing to fill in."""
    stripped = body.removeprefix(BOM).lstrip()
    if not ndjson and not stripped.startswith(b"[") and not defaults:
        return body
    if ndjson:
        entries = [
            _line(number, line) for number, line in enumerate(stripped.splitlines(), 1) if line.strip()
        ]
    elif stripped.startswith(b"["):
        entries = _loads(stripped, "body")
    else:
        document = _loads(stripped, "body")
        if not isinstance(document, dict) or not isinstance(document.get("logs"), list):
            return body  # let the native validation name what is wrong
        entries = document["logs"]
    if not isinstance(entries, list):
        raise BadRequest("a JSON array body must be an array of log objects")
    # The standard library both ways: it keeps what the native validation must judge (integers beyond 64
    # bits, NaN, lone surrogates as escapes) exactly as it came, where orjson would refuse or change it.
    return json.dumps({"logs": [_entry(entry, defaults) for entry in entries]}).encode()


def _line(number: int, line: bytes) -> Any:
    return _loads(line, f"NDJSON line {number}")


def _loads(raw: bytes, where: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"{where} is not valid JSON: {exc}") from None


def _entry(entry: Any, defaults: dict[str, str]) -> Any:
    if not isinstance(entry, dict):
        return entry  # validation names it: logs.N must be an object
    for field, names in ALIASES.items():
        for name in names:
            if name in entry and field not in entry:
                entry[field] = entry.pop(name)
    for field, value in defaults.items():
        entry.setdefault(field, value)
    return entry
