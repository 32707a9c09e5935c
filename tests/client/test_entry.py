"""logsave.entry: whatever an application passes becomes an entry the server accepts."""

from __future__ import annotations

import json
import logging
import sys

from logsave import entry

DEFAULTS = {"service": "svc"}


def encoded(document: dict) -> dict:
    return json.loads(entry.encode(document, 256 * 1024)[0])


def test_python_levels_map_to_the_servers() -> None:
    assert [entry.level_name(n)[0] for n in (5, 10, 20, 30, 40, 50, 60)] == [
        "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "FATAL"]  # fmt: skip
    assert entry.level_name("warning") == ("WARN", None)
    assert entry.level_name("CRITICAL") == ("FATAL", None)
    assert entry.level_name("notice") == ("INFO", "notice")


def test_columns_stay_columns_and_the_rest_goes_to_metadata() -> None:
    document = entry.from_call(
        1.5, "INFO", "hi", {"user_id": "u", "order": 7, "metadata": {"a": 1}}, DEFAULTS
    )
    assert encoded(document) == {
        "service": "svc", "level": "INFO", "message": "hi", "created_at": 1.5, "user_id": "u",
        "metadata": {"a": 1, "order": 7},
    }  # fmt: skip


def test_values_json_cannot_hold_become_capped_reprs() -> None:
    class Odd:
        def __repr__(self) -> str:
            return "odd" * 1000

    document = entry.from_call(1.0, "INFO", "m", {"o": Odd(), "n": float("nan"), "k": {1: {2, 3}}}, DEFAULTS)
    metadata = encoded(document)["metadata"]
    assert metadata["o"].startswith("oddodd") and len(metadata["o"]) == entry.MAX_REPR + 1
    assert metadata["n"] == "nan"
    assert metadata["k"] == {"1": "{2, 3}"}


def test_deep_metadata_is_cut_to_a_depth_the_server_takes() -> None:
    deep: dict = {}
    node = deep
    for _ in range(500):
        node["a"] = {}
        node = node["a"]
    metadata = encoded(entry.from_call(1.0, "INFO", "m", {"metadata": deep}, DEFAULTS))["metadata"]
    levels = 0
    while isinstance(metadata, dict):
        metadata, levels = metadata["a"], levels + 1
    assert levels == entry.MAX_DEPTH and isinstance(metadata, str)  # the rest is kept as its repr


def test_an_oversized_log_is_cut_not_dropped() -> None:
    raw, cut = entry.encode(
        entry.from_call(1.0, "INFO", "x" * 5_000_000, {"blob": "y" * 5_000_000}, DEFAULTS), 256 * 1024
    )
    assert cut and len(raw) <= 256 * 1024
    document = json.loads(raw)
    assert document["message"].startswith("xxx") and "cut by logsave" in document["message"]


def test_text_over_a_columns_limit_is_shortened() -> None:
    document = encoded(
        entry.from_call(1.0, "INFO", "m", {"trace_id": "t" * 40, "service": "s" * 300}, DEFAULTS)
    )
    assert document["trace_id"] == "t" * 32 and document["service"] == "s" * 100


def test_a_record_brings_its_exception_function_file_and_extras() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "app.orders",
            logging.ERROR,
            "/srv/app/orders.py",
            12,
            "failed %s",
            ("x",),
            sys.exc_info(),
            "place",
        )
    record.trace_id = "abc"
    record.order = {"id": 1}
    document = encoded(entry.from_record(record, record.getMessage(), DEFAULTS))
    assert document["level"] == "ERROR" and document["message"] == "failed x"
    assert document["error_type"] == "ValueError" and "raise ValueError" in document["stack_trace"]
    assert document["function_name"] == "place" and document["file_path"] == "/srv/app/orders.py"
    assert document["trace_id"] == "abc"
    assert document["metadata"] == {"order": {"id": 1}, "logger": "app.orders"}
    assert document["created_at"] == record.created
