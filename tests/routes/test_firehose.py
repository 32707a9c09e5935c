"""POST /firehose against the real server (`python -m app` on real PostgreSQL), with requests shaped as
Amazon Data Firehose's HTTP endpoint delivery sends them and records from `sam local generate-event`
(tests/events/cloudwatch/)."""

from __future__ import annotations

import base64
import gzip
import json
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.serverproc import start_server
from tests.support import DB, make_settings

EVENTS = Path(__file__).parents[1] / "events" / "cloudwatch"
APACHE = '64.242.88.10 - - [07/Mar/2004:16:10:02 -0800] "GET /mailman/listinfo/hsdivision HTTP/1.1" 200 6291'
ARN = "arn:aws:firehose:eu-west-1:123456789012:deliverystream/orders-stream"


def sam_records(name: str) -> list[dict[str, str]]:
    """The `data` of a sam-generated Firehose event's records, as an HTTP endpoint request carries them."""
    event = json.loads((EVENTS / f"{name}.json").read_text())
    return [{"data": record["data"]} for record in event["records"]]


def record(data: bytes | str | dict[str, Any]) -> dict[str, str]:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    raw = raw.encode() if isinstance(raw, str) else raw
    return {"data": base64.b64encode(raw).decode()}


def cloudwatch_record(messages: list[str], control: bool = False) -> dict[str, str]:
    now = int(time.time() * 1000)
    payload = {
        "messageType": "CONTROL_MESSAGE" if control else "DATA_MESSAGE",
        "owner": "123456789012", "logGroup": "/aws/lambda/checkout", "logStream": "2026/11/30/[$LATEST]abc",
        "subscriptionFilters": ["to-firehose"],
        "logEvents": [{"id": f"{now}{i}", "timestamp": now + i, "message": m} for i, m in enumerate(messages)],
    }  # fmt: skip
    return record(gzip.compress(json.dumps(payload).encode()))


def post(
    url: str, records: list[dict[str, str]], request_id: str | None = None, params: str = "", **headers: str
) -> httpx.Response:
    request_id = request_id or str(uuid.uuid4())
    body = {"requestId": request_id, "timestamp": int(time.time() * 1000), "records": records}
    return httpx.post(
        f"{url}/firehose{params}",
        json=body,
        headers={"X-Amz-Firehose-Request-Id": request_id, "X-Amz-Firehose-Protocol-Version": "1.0",
                 "X-Amz-Firehose-Source-Arn": ARN, **headers},
        timeout=30,
    )  # fmt: skip


def rows(db: DB) -> list[dict[str, Any]]:
    found = db.fetch("SELECT level::text, service, environment, message, metadata FROM logs ORDER BY id")
    return [{**dict(r), "metadata": json.loads(r["metadata"]) if r["metadata"] else {}} for r in found]


def test_every_record_kind_is_stored(server: tuple[Any, str], db: DB) -> None:
    _, url = server
    records = [
        *sam_records("sam-firehose-cloudwatch-logs-processor"),  # a CONTROL_MESSAGE and 3 DATA_MESSAGEs
        *sam_records("sam-firehose"),  # "Hello, this is a test 123."
        *sam_records("sam-firehose-apachelog"),
        record({"level": "error", "msg": "payment failed", "user_id": "u-1"}),
        record(b'{"message": "one", "level": "WARN"}\n{"message": "two", "service": "own"}\n'),
        record(b'[{"message": "in an array"}]'),
        record("WARNING disk almost full\n"),
    ]
    request_id = str(uuid.uuid4())
    answer = post(url, records, request_id)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["requestId"] == request_id and isinstance(body["timestamp"], int)
    assert set(body) == {"requestId", "timestamp"}
    stored = rows(db)
    cloudwatch = [r for r in stored if r["metadata"].get("log_group")]
    expected = []
    for item in sam_records("sam-firehose-cloudwatch-logs-processor"):
        payload = json.loads(gzip.decompress(base64.b64decode(item["data"])))
        if payload["messageType"] == "DATA_MESSAGE":
            expected += [e["message"] for e in payload["logEvents"]]
    assert [r["message"] for r in cloudwatch] == expected and expected
    assert {r["service"] for r in cloudwatch} == {
        "copy-cwl-lambda-invoke-input-1510254365531-LogGroup-17Q1WBYO69X0L"
    }
    others = [(r["level"], r["service"], r["message"]) for r in stored if not r["metadata"].get("log_group")]
    assert others == [
        ("INFO", "orders-stream", "Hello, this is a test 123."),
        ("INFO", "orders-stream", APACHE),
        ("ERROR", "orders-stream", "payment failed"),
        ("WARN", "orders-stream", "one"),
        ("INFO", "own", "two"),
        ("INFO", "orders-stream", "in an array"),
        ("WARN", "orders-stream", "WARNING disk almost full"),
    ]  # fmt: skip


def test_common_attributes_and_query_defaults(server: tuple[Any, str], db: DB) -> None:
    _, url = server
    attributes = json.dumps(
        {"commonAttributes": {"service": "web", "environment": "production", "team": "pay"}}
    )
    answer = post(url, [record("plain line"), cloudwatch_record(["from lambda"])], params="?level=WARN",
                  **{"X-Amz-Firehose-Common-Attributes": attributes})  # fmt: skip
    assert answer.status_code == 200, answer.text
    got = [
        (r["level"], r["service"], r["environment"], r["message"], r["metadata"]["team"]) for r in rows(db)
    ]
    assert got == [
        ("WARN", "web", "production", "plain line", "pay"),
        ("INFO", "checkout", "production", "from lambda", "pay"),
    ]


def test_a_retried_request_id_is_stored_once(server: tuple[Any, str], db: DB) -> None:
    _, url = server
    request_id = str(uuid.uuid4())
    first = post(url, [record("a"), record("b")], request_id)
    # Firehose's next attempt carries a new timestamp; even other records under that id are not stored.
    again = post(url, [record("a"), record("b")], request_id)
    other = post(url, [record("c")], request_id)
    assert first.status_code == again.status_code == other.status_code == 200
    assert again.json() == first.json() == other.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert [r["message"] for r in rows(db)] == ["a", "b"]
    assert post(url, [record("a")]).status_code == 200  # a new request id is a new delivery
    assert db.count() == 3
    # An id PostgreSQL's text cannot hold (NUL) is keyed by its digest, and still echoed.
    odd = json.dumps({"requestId": "r\u0000é", "records": [record("d")]})
    answers = [httpx.post(url + "/firehose", content=odd, headers={"Content-Type": "application/json"})
               for _ in range(2)]  # fmt: skip
    assert [a.status_code for a in answers] == [200, 200] and answers[0].json()["requestId"] == "r\u0000é"
    assert db.count() == 4


def test_unreadable_records_are_counted_and_the_rest_stored(server: tuple[Any, str], db: DB) -> None:
    _, url = server
    bad = [{"data": "not base64!"}, record(gzip.compress(b"{broken")), {"nodata": 1},
           record({"message": "bad level", "level": "LOUD"})]  # fmt: skip
    answer = post(url, [record("kept"), *bad])
    assert answer.status_code == 200, answer.text
    assert [r["message"] for r in rows(db)] == ["kept"]
    metrics = httpx.get(url + "/metrics").text
    # Three records that cannot be read at all, and one log that fails validation.
    assert 'logsave_cloudwatch_rejected_total{reason="undecodable",source="firehose"} 3.0' in metrics
    assert 'logsave_cloudwatch_rejected_total{reason="invalid",source="firehose"} 1.0' in metrics


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b'{"requestId": "r", "records": 5}', 400, "records must be"),
        (b'{"requestId": "r", "records": [{"data": "!!"}]}', 400, "no record could be stored"),
        (b'{"records": []}', 400, "requestId"),
    ],
)
def test_error_shapes(server: tuple[Any, str], db: DB, body: bytes, status: int, words: str) -> None:
    _, url = server
    answer = httpx.post(url + "/firehose", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == status
    error = answer.json()
    assert set(error) == {"requestId", "timestamp", "errorMessage"} and words in error["errorMessage"]
    assert db.count() == 0


def test_error_answers_carry_the_request_id(server: tuple[Any, str], db: DB) -> None:
    _, url = server
    answer = post(url, [record("x")], "req-1", params="?colour=red")
    assert answer.status_code == 400
    assert answer.json()["requestId"] == "req-1" and "colour" in answer.json()["errorMessage"]
    huge = post(url, [record(gzip.compress(b"{" + b" " * 12_000_000 + b"}"))], "req-2")
    assert huge.status_code == 413 and huge.json()["requestId"] == "req-2"
    assert db.count() == 0


def test_the_access_key_is_an_api_key(db: DB, database_url: str, tmp_path: Path) -> None:
    process, url = start_server({"DATABASE_URL": database_url, "INGEST_API_KEYS": "firehose-key"}, tmp_path)
    try:
        missing = post(url, [record("x")], "req-nokey")
        wrong = post(url, [record("x")], **{"X-Amz-Firehose-Access-Key": "nope"})
        right = post(url, [record("x")], **{"X-Amz-Firehose-Access-Key": "firehose-key"})
    finally:
        process.kill()
        process.wait(10)
    assert missing.status_code == wrong.status_code == 401
    assert missing.json()["requestId"] == "req-nokey" and "key" in missing.json()["errorMessage"]
    assert right.status_code == 200, right.text
    assert db.count() == 1


def test_503_in_firehose_shape_when_postgresql_is_away(db: DB) -> None:
    # Not committed -> 503 (Firehose retries it with the same requestId), in Firehose's error shape.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    app = create_app(make_settings(f"postgresql://postgres@127.0.0.1:{closed}/none", db_acquire_timeout=2))
    client = TestClient(app)  # no lifespan: the pool is opened (and fails) on first use
    body = {
        "requestId": "req-down",
        "timestamp": int(time.time() * 1000),
        "records": [record({"message": "x"})],
    }
    response = client.post("/firehose", json=body, headers={"X-Amz-Firehose-Request-Id": "req-down"})
    assert response.status_code == 503 and int(response.headers["Retry-After"]) >= 1
    assert response.json()["requestId"] == "req-down" and response.json()["errorMessage"]
