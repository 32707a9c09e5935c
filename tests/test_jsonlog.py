from __future__ import annotations

import json
import logging

from app.jsonlog import JsonFormatter


def test_records_become_one_json_object_with_their_extra_fields() -> None:
    record = logging.makeLogRecord(
        {
            "name": "app",
            "levelname": "INFO",
            "msg": "request %s",
            "args": ("done",),
            "method": "POST",
            "path": "/logs",
            "status": 200,
            "duration_ms": 1.5,
            "saved": 10,
        }
    )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "request done" and entry["level"] == "INFO"
    assert {k: entry[k] for k in ("method", "path", "status", "duration_ms", "saved")} == {
        "method": "POST", "path": "/logs", "status": 200, "duration_ms": 1.5, "saved": 10}  # fmt: skip
    assert entry["time"].endswith("+00:00")


def test_exceptions_are_included() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.makeLogRecord({"msg": "failed", "levelname": "ERROR", "exc_info": sys.exc_info()})
    assert "ValueError: boom" in json.loads(JsonFormatter().format(record))["exception"]
