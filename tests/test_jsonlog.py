from __future__ import annotations

import json
import logging

import pytest

from app.jsonlog import JsonFormatter, configure


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


def test_a_line_is_the_standard_json_of_its_fields_unicode_and_all() -> None:
    class Odd:
        def __str__(self) -> str:
            return "odd ✓"

    record = logging.makeLogRecord(
        {"name": "app", "levelname": "INFO", "msg": "request", "created": 1_700_000_000.1239,
         "path": '/lögs\n"x"\\', "status": 200, "duration_ms": 0.1, "when": Odd(), "nan": float("nan")}
    )  # fmt: skip
    expected = {"time": "2023-11-14T22:13:20.123+00:00", "level": "INFO", "logger": "app", "message": "request",
                "path": '/lögs\n"x"\\', "status": 200, "duration_ms": 0.1, "when": "odd ✓", "nan": float("nan")}  # fmt: skip
    assert JsonFormatter().format(record) == json.dumps(expected, default=str, ensure_ascii=False)


def test_configure_leaves_the_lines_as_they_were(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure("INFO")
        # A logger of its own: "app" may have been disabled by an earlier test's dictConfig in this process.
        logging.getLogger("tests.jsonlog.lines").info(
            "request", extra={"method": "POST", "path": "/logs", "saved": 3}
        )
        line = capsys.readouterr().err
        entry = json.loads(line)
        assert list(entry) == ["time", "level", "logger", "message", "method", "path", "saved"]
        assert line == json.dumps(entry, ensure_ascii=False) + "\n"
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])


def test_configure_keeps_the_caller_other_handlers_read() -> None:
    """The OpenTelemetry SDK's and ecs-logging's handlers, in the same process, write funcName and lineno."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    records: list[logging.LogRecord] = []
    collect = logging.Handler()
    collect.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("tests.jsonlog.caller")
    try:
        configure("INFO")
        logger.addHandler(collect)
        logger.warning("seen")
    finally:
        logger.removeHandler(collect)
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    assert [r.funcName for r in records] == ["test_configure_keeps_the_caller_other_handlers_read"]
    assert records[0].thread is not None and records[0].process is not None
