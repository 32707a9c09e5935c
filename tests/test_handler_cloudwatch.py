"""handler.handler called with CloudWatch Logs subscription events against real PostgreSQL: the event
`sam local generate-event cloudwatch logs` makes (tests/events/cloudwatch/), and events in the shapes
AWS documents, with the lines Lambda's runtimes really write."""

from __future__ import annotations

import base64
import gzip
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from app import metrics
from tests.support import DB
from tests.test_faults import _pg_ctl, own_postgres  # noqa: F401 - a fixture
from tests.test_handler import Context, load_handler

EVENTS = Path(__file__).parent / "events" / "cloudwatch"
REQUEST = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"


@pytest.fixture
def lambda_handler(db: DB, database_url: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return load_handler(monkeypatch, DATABASE_URL=database_url)


def sam_event() -> dict[str, Any]:
    return json.loads((EVENTS / "sam-cloudwatch-logs.json").read_text())


def awslogs(payload: dict[str, Any] | bytes) -> dict[str, Any]:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return {"awslogs": {"data": base64.b64encode(gzip.compress(raw)).decode()}}


def now_ms(offset: int = 0) -> int:
    return int(time.time() * 1000) + offset


def data_message(messages: list[str], group: str = "/aws/lambda/checkout", **extra: Any) -> dict[str, Any]:
    start = now_ms()
    return {
        "messageType": "DATA_MESSAGE",
        "owner": "123456789012",
        "logGroup": group,
        "logStream": "2026/11/30/[$LATEST]f3a1b2c3d4e5f60718293a4b5c6d7e8f",
        "subscriptionFilters": ["log-save-server"],
        "logEvents": [
            {"id": f"3826{start}{i:04d}", "timestamp": start + i, "message": message}
            for i, message in enumerate(messages)
        ],
        **extra,
    }


def rejected(source: str = "lambda", reason: str = "invalid") -> float:
    return metrics.CLOUDWATCH_REJECTED.labels(source=source, reason=reason)._value.get()


def stored(db: DB) -> list[dict[str, Any]]:
    rows = db.fetch(
        "SELECT created_at, level::text, service, message, duration_ms, error_type, stack_trace, metadata"
        " FROM logs ORDER BY id"
    )
    return [{**dict(r), "metadata": json.loads(r["metadata"]) if r["metadata"] else None} for r in rows]


def test_the_sam_event_is_stored_with_the_window_rule(lambda_handler: ModuleType, db: DB) -> None:
    answer = lambda_handler.handler(sam_event(), Context())
    assert answer == {"status": "success", "saved": 2, "rejected": 0}
    rows = stored(db)
    assert [(r["level"], r["service"], r["message"]) for r in rows] == [
        ("ERROR", "testLogGroup", "[ERROR] First test message"),
        ("ERROR", "testLogGroup", "[ERROR] Second test message"),
    ]
    # 2015 is outside CREATED_AT_WINDOW: stored at the time received, the original kept.
    assert all(abs(r["created_at"] - datetime.now(UTC)) < timedelta(minutes=5) for r in rows)
    assert rows[0]["metadata"] == {
        "log_group": "testLogGroup", "log_stream": "testLogStream", "owner": "123456789123",
        "event_id": "eventId1", "original_created_at": "2015-08-24T19:03:07+00:00",
    }  # fmt: skip


def test_the_same_event_delivered_again_stores_nothing_new(lambda_handler: ModuleType, db: DB) -> None:
    event = awslogs(data_message(["first", "second", "third"]))
    first = lambda_handler.handler(event, Context())
    again = lambda_handler.handler(event, Context())
    assert first == {"status": "success", "saved": 3, "rejected": 0}
    assert again == {**first, "replayed": True}
    assert db.count() == 3
    # Another batch of the same stream (other event ids) is new.
    assert lambda_handler.handler(awslogs(data_message(["fourth"])), Context())["saved"] == 1
    assert db.count() == 4


def test_a_control_message_stores_nothing_and_succeeds(lambda_handler: ModuleType, db: DB) -> None:
    control = {
        "messageType": "CONTROL_MESSAGE", "owner": "CloudwatchLogs", "logGroup": "", "logStream": "",
        "subscriptionFilters": [], "logEvents": [{"id": "", "timestamp": now_ms(),
        "message": "CWL CONTROL MESSAGE: Checking health of destination Firehose."}],
    }  # fmt: skip
    assert lambda_handler.handler(awslogs(control), Context()) == {
        "status": "control",
        "saved": 0,
        "rejected": 0,
    }
    assert db.count() == 0


def test_lambda_runtime_lines_are_parsed(lambda_handler: ModuleType, db: DB) -> None:
    lines = [
        "INIT_START Runtime Version: python:3.13.v12\tRuntime Version ARN: arn:aws:lambda:eu-west-1::runtime:abc\n",
        f"START RequestId: {REQUEST} Version: $LATEST\n",
        f"[WARNING]\t2026-11-30T10:00:00.123Z\t{REQUEST}\tcard declined for order 1042\n",
        f'2026-11-30T10:00:00.124Z\t{REQUEST}\tERROR\tInvoke Error \t{{"errorType":"Error"}}\n',
        json.dumps(
            {
                "timestamp": "2026-11-30T10:00:00.125Z",
                "level": "ERROR",
                "message": "boom",
                "logger": "root",
                "requestId": REQUEST,
                "errorType": "ValueError",
                "stackTrace": ['  File "/var/task/app.py", line 3, in handler\n'],
            }
        ),
        json.dumps({"level": "warn", "msg": "slow query", "duration_ms": 812.5, "user_id": "u-7"}),
        f"END RequestId: {REQUEST}\n",
        (
            f"REPORT RequestId: {REQUEST}\tDuration: 102.25 ms\tBilled Duration: 103 ms\tMemory Size: 512 MB\t"
            "Max Memory Used: 70 MB\tInit Duration: 251.88 ms\t\nXRAY TraceId: 1-5e1b4151-5ac6c58f\tSegmentId: 7\t\n"
        ),
        "Task timed out after 3.00 seconds\n",
        "error: connection refused\n",
    ]
    answer = lambda_handler.handler(awslogs(data_message(lines)), Context())
    assert answer == {"status": "success", "saved": len(lines), "rejected": 0}
    rows = stored(db)
    assert {r["service"] for r in rows} == {"checkout"}
    got = [(r["level"], r["message"]) for r in rows]
    assert got == [
        ("INFO", lines[0].rstrip("\n")),
        ("INFO", f"START RequestId: {REQUEST} Version: $LATEST"),
        ("WARN", "card declined for order 1042"),
        ("ERROR", 'Invoke Error \t{"errorType":"Error"}'),
        ("ERROR", "boom"),
        ("WARN", "slow query"),
        ("INFO", f"END RequestId: {REQUEST}"),
        ("INFO", lines[7].rstrip("\n")),
        ("INFO", "Task timed out after 3.00 seconds"),
        ("ERROR", "error: connection refused"),
    ]
    assert [r["metadata"].get("request_id") for r in rows[1:8]] == [REQUEST] * 4 + [None] + [REQUEST] * 2
    assert rows[4]["error_type"] == "ValueError"
    assert rows[4]["stack_trace"].startswith('  File "/var/task/app.py"')
    assert rows[4]["metadata"]["logger"] == "root"
    assert rows[5]["duration_ms"] == 812.5
    report = rows[7]
    assert report["duration_ms"] == 102.25
    assert {
        k: report["metadata"][k]
        for k in (
            "billed_duration_ms",
            "memory_size_mb",
            "max_memory_used_mb",
            "init_duration_ms",
            "xray_trace_id",
        )
    } == {
        "billed_duration_ms": 103,
        "memory_size_mb": 512,
        "max_memory_used_mb": 70,
        "init_duration_ms": 251.88,
        "xray_trace_id": "1-5e1b4151-5ac6c58f",
    }
    assert rows[0]["metadata"]["log_group"] == "/aws/lambda/checkout"
    assert rows[0]["metadata"]["owner"] == "123456789012"


def test_lambda_json_platform_records(lambda_handler: ModuleType, db: DB) -> None:
    lines = [
        json.dumps({"time": "2026-11-30T10:00:00.000Z", "type": "platform.start",
                    "record": {"requestId": REQUEST, "version": "$LATEST"}}),
        json.dumps({"time": "2026-11-30T10:00:00.300Z", "type": "platform.report",
                    "record": {"requestId": REQUEST, "status": "success", "metrics": {
                        "durationMs": 287.5, "billedDurationMs": 288, "memorySizeMB": 128,
                        "maxMemoryUsedMB": 66, "initDurationMs": 180.1}}}),
        json.dumps({"time": "2026-11-30T10:00:03.000Z", "type": "platform.runtimeDone",
                    "record": {"requestId": REQUEST, "status": "timeout"}}),
    ]  # fmt: skip
    group = "/aws/ecs/billing"
    assert lambda_handler.handler(awslogs(data_message(lines, group)), Context())["saved"] == 3
    rows = stored(db)
    assert [(r["service"], r["level"], r["message"]) for r in rows] == [
        ("billing", "INFO", "platform.start"),
        ("billing", "INFO", "platform.report"),
        ("billing", "ERROR", "platform.runtimeDone: timeout"),
    ]
    assert rows[1]["duration_ms"] == 287.5
    assert rows[1]["metadata"]["billed_duration_ms"] == 288
    assert rows[1]["metadata"]["init_duration_ms"] == 180.1
    assert rows[0]["metadata"]["record"] == {"version": "$LATEST"}
    assert all(r["metadata"]["request_id"] == REQUEST for r in rows)


@pytest.mark.parametrize(
    ("group", "service"),
    [("/ecs/api", "api"), ("/aws/lambda/", "/aws/lambda/"), ("payments-prod", "payments-prod"),
     ("/aws/apigateway/welcome", "/aws/apigateway/welcome")],
)  # fmt: skip
def test_service_from_the_log_group(lambda_handler: ModuleType, db: DB, group: str, service: str) -> None:
    assert lambda_handler.handler(awslogs(data_message(["hello"], group)), Context())["saved"] == 1
    assert stored(db)[0]["service"] == service


@pytest.mark.parametrize(
    "data",
    [
        "not base64!!",
        base64.b64encode(b"plain, not gzip").decode(),
        base64.b64encode(gzip.compress(b"{not json")).decode(),
        base64.b64encode(gzip.compress(b"[1, 2]")).decode(),
        base64.b64encode(gzip.compress(b'{"messageType": "DATA_MESSAGE"}')).decode(),
        base64.b64encode(gzip.compress(b'{"messageType":"DATA_MESSAGE"}')[:-6]).decode(),
        None,
    ],
    ids=["base64", "gzip", "json", "array", "not-a-payload", "truncated", "no-data"],
)
def test_a_poison_event_does_not_raise_and_is_counted(lambda_handler: ModuleType, db: DB, data: Any) -> None:
    before = rejected(reason="undecodable")
    answer = lambda_handler.handler({"awslogs": {"data": data}}, Context())
    assert answer["status"] == "rejected" and answer["rejected"] == 1 and answer["message"]
    assert rejected(reason="undecodable") == before + 1
    assert db.count() == 0


def test_bad_lines_are_counted_and_the_rest_stored(lambda_handler: ModuleType, db: DB) -> None:
    payload = data_message(["good one", json.dumps({"message": "bad level", "level": "LOUD"}), "good two"])
    payload["logEvents"] += [{"id": "x", "timestamp": "yesterday", "message": "m"}, "not an object"]
    before = rejected()
    answer = lambda_handler.handler(awslogs(payload), Context())
    assert (answer["saved"], answer["rejected"]) == (2, 3)
    assert "level" in answer["message"] and "logEvents.3.timestamp" in answer["message"]
    assert rejected() == before + 3
    assert [r["message"] for r in stored(db)] == ["good one", "good two"]


def test_a_database_stopped_mid_event_raises_then_the_retry_stores_once(
    own_postgres: tuple[str, Path],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, pgdata = own_postgres
    lambda_handler = load_handler(
        monkeypatch, DATABASE_URL=url, DB_ACQUIRE_TIMEOUT="2", DB_COMMAND_TIMEOUT="5"
    )
    assert lambda_handler.handler(awslogs(data_message(["warm"])), Context())["saved"] == 1  # pool open
    event = awslogs(data_message(["during the outage", "and another"]))
    _pg_ctl(pgdata, "stop", "-m", "fast")
    with pytest.raises(Exception) as raised:
        lambda_handler.handler(event, Context())
    assert raised.value.status == 503  # type: ignore[attr-defined]  # ServiceUnavailable: Lambda retries
    _pg_ctl(pgdata, "start")
    assert lambda_handler.handler(event, Context())["saved"] == 2
    assert lambda_handler.handler(event, Context())["replayed"] is True
    assert DB(url).count() == 3
