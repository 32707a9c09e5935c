"""app/formats/cloudwatch.py on its own: payloads and lines -> entries (the handler tests store them)."""

from __future__ import annotations

import base64
import gzip
import json

import pytest

from app.errors import BadRequest, PayloadTooLarge
from app.formats import cloudwatch

REQUEST = "8476a536-e9f4-11e8-9739-2dfe598c3fcd"


def line(text: str) -> dict:
    return cloudwatch.line(text, "svc", 1.5, {})


@pytest.mark.parametrize(
    ("group", "service"),
    [("/aws/lambda/orders", "orders"), ("/aws/ecs/api", "api"), ("/ecs/web", "web"), ("plain", "plain"),
     ("/aws/lambda/" + "x" * 200, "x" * 100), ("", "cloudwatch")],
)  # fmt: skip
def test_service_of_a_log_group(group: str, service: str) -> None:
    assert cloudwatch.service_of(group) == service


@pytest.mark.parametrize(
    ("text", "level", "message", "request_id"),
    [
        (f"[INFO]\t2026-11-30T10:00:00.000Z\t{REQUEST}\thello\n", "INFO", "hello", REQUEST),
        (f"[CRITICAL]\t2026-11-30T10:00:00.000Z\t{REQUEST}\tdown\nsecond line", "FATAL", "down\nsecond line", REQUEST),
        (f"2026-11-30T10:00:00.000Z\t{REQUEST}\tWARN\tslow", "WARN", "slow", REQUEST),
        (f"START RequestId: {REQUEST} Version: 3", "INFO", f"START RequestId: {REQUEST} Version: 3", REQUEST),
        ("[error] no tabs here", "ERROR", "[error] no tabs here", None),
        ("Debugging is fun", "INFO", "Debugging is fun", None),
        ("DEBUG: x=1", "DEBUG", "DEBUG: x=1", None),
        ("{not json at all", "INFO", "{not json at all", None),
        ('{"no": "message"}', "INFO", '{"no": "message"}', None),
    ],
)  # fmt: skip
def test_lines(text: str, level: str, message: str, request_id: str | None) -> None:
    entry = line(text)
    assert (entry["level"], entry["message"], entry["metadata"].get("request_id")) == (
        level,
        message,
        request_id,
    )
    assert entry["service"] == "svc" and entry["created_at"] == 1.5


def test_report_line_without_init_duration() -> None:
    entry = line(f"REPORT RequestId: {REQUEST}\tDuration: 2.10 ms\tBilled Duration: 3 ms\tMemory Size: 128 MB\t"
                 "Max Memory Used: 40 MB\t")  # fmt: skip
    assert entry["duration_ms"] == 2.1
    assert entry["metadata"] == {"request_id": REQUEST, "billed_duration_ms": 3, "memory_size_mb": 128,
                                 "max_memory_used_mb": 40}  # fmt: skip


def test_a_json_line_of_our_schema_keeps_its_own_fields() -> None:
    entry = line(json.dumps({"service": "own", "level": "error", "message": "m", "timestamp": "2026-11-30T10:00:00Z",
                             "metadata": {"k": 1}, "extra": True}))  # fmt: skip
    assert entry == {"service": "own", "level": "error", "message": "m", "created_at": "2026-11-30T10:00:00Z",
                     "metadata": {"k": 1}, "extra": True}  # fmt: skip


def test_payloads_back_to_back_and_lone_surrogates() -> None:
    raw = b'{"messageType": "CONTROL_MESSAGE"}\n{"logGroup": "g\\ud800"}'
    assert cloudwatch.payloads(raw) == [{"messageType": "CONTROL_MESSAGE"}, {"logGroup": "g\ufffd"}]
    with pytest.raises(BadRequest, match="JSON object"):
        cloudwatch.payloads(b"[1]")


def test_unpack_checks_base64_gzip_and_size() -> None:
    data = base64.b64encode(gzip.compress(b"{}")).decode()
    assert cloudwatch.unpack(data + "=", 1024) == b"{}"  # one `=` too many, as sam writes it
    with pytest.raises(BadRequest, match="base64"):
        cloudwatch.unpack("@@@", 1024)
    with pytest.raises(BadRequest, match="gzip"):
        cloudwatch.unpack(base64.b64encode(b"{}").decode(), 1024)
    with pytest.raises(PayloadTooLarge):
        cloudwatch.unpack(base64.b64encode(gzip.compress(b" " * 5000)).decode(), 1024)


def test_the_identity_of_an_event_is_its_group_stream_and_ids() -> None:
    def payload(ids: list[str], stream: str = "s") -> dict:
        events = [{"id": i, "timestamp": 1, "message": "m"} for i in ids]
        return {"messageType": "DATA_MESSAGE", "logGroup": "g", "logStream": stream, "logEvents": events}

    assert (
        cloudwatch.entries(payload(["1", "2"])).identity == cloudwatch.entries(payload(["1", "2"])).identity
    )
    assert (
        cloudwatch.entries(payload(["1", "2"])).identity != cloudwatch.entries(payload(["1", "3"])).identity
    )
    assert cloudwatch.entries(payload(["1"])).identity != cloudwatch.entries(payload(["1"], "t")).identity
