"""POST /loki/api/v1/push and GET /loki/ready: stored and answered 204, bad bodies a clear 4xx with nothing
stored, refused lines, idempotency; python-logging-loki through `logging` and the golden bodies of Promtail,
Alloy, Fluent Bit, Vector and Docker's driver (tests/golden/loki/) against the real server."""

from __future__ import annotations

import gzip
import json
import logging
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import logging_loki
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.formats.test_loki import now_ns, push_request, snappy
from tests.serverproc import start_server
from tests.support import DB, make_settings

GOLDEN = Path(__file__).parent.parent / "golden" / "loki"
PUSH = "/loki/api/v1/push"
PROTOBUF = {"Content-Type": "application/x-protobuf"}


# --- in process ------------------------------------------------------------------------------


def test_protobuf_push_is_stored_and_answered_204(client: TestClient, db: DB) -> None:
    ns = now_ns()
    body = snappy(
        push_request(
            [('{service="api", level="error"}', [(ns // 10**9, 0, f"line {i}", []) for i in range(3)])]
        )
    )
    response = client.post(PUSH, content=body, headers=PROTOBUF)
    assert response.status_code == 204 and response.content == b""
    stored = db.fetch("SELECT service, level::text AS level, message FROM logs ORDER BY message")
    assert [(r["service"], r["level"], r["message"]) for r in stored] == [
        ("api", "ERROR", f"line {i}") for i in range(3)
    ]


def test_gzip_json_push_is_stored(client: TestClient, db: DB) -> None:
    body = json.dumps({"streams": [{"stream": {"app": "web"}, "values": [[str(now_ns()), "hello"]]}]})
    response = client.post(
        PUSH,
        content=gzip.compress(body.encode()),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 204
    assert [r["message"] for r in db.fetch("SELECT message FROM logs")] == ["hello"]


@pytest.mark.parametrize(
    ("content", "headers", "status", "problem"),
    [
        (b"\x05abc", PROTOBUF, 400, "snappy"),
        (b"", PROTOBUF, 400, "snappy"),
        (snappy(b"\xff\xff\xff"), PROTOBUF, 400, "PushRequest"),
        (snappy(push_request([("service=x", [(1, 0, "x", [])])])), PROTOBUF, 400, "labels"),
        (b"\xff\xff\xff\xff\x0f", PROTOBUF, 413, "expands to"),
        (b'{"streams": 5}', {"Content-Type": "application/json"}, 400, "streams"),
        (b"not json", {"Content-Type": "application/json"}, 400, "not valid JSON"),
        (b"{}", {"Content-Type": "text/plain"}, 415, "Loki push takes"),
    ],
    ids=[
        "bad-snappy",
        "empty",
        "not-protobuf",
        "bad-labels",
        "snappy-bomb",
        "streams-not-array",
        "bad-json",
        "text",
    ],
)
def test_bad_bodies_are_a_clear_4xx_and_store_nothing(
    client: TestClient, db: DB, content: bytes, headers: dict[str, str], status: int, problem: str
) -> None:
    response = client.post(PUSH, content=content, headers=headers)
    assert response.status_code == status, response.text
    assert problem in response.json()["message"]
    assert db.count() == 0


def test_refused_lines_are_a_400_naming_them_while_the_others_are_stored(client: TestClient, db: DB) -> None:
    ns = str(now_ns())
    body = {"streams": [{"stream": {"app": "a"}, "values": [[ns, "good"], [ns, '{"duration_ms": -5}']]}]}
    response = client.post(PUSH, json=body)
    assert response.status_code == 400
    assert (
        "1 of 2 log line(s) refused" in response.json()["message"]
        and "duration_ms" in response.json()["message"]
    )
    assert [r["message"] for r in db.fetch("SELECT message FROM logs")] == ["good"]


def test_an_empty_push_is_a_204_with_nothing_stored(client: TestClient, db: DB) -> None:
    assert client.post(PUSH, json={"streams": []}).status_code == 204
    assert client.post(PUSH, content=snappy(b""), headers=PROTOBUF).status_code == 204
    assert db.count() == 0


def test_an_idempotency_key_stores_once_and_replays_204(client: TestClient, db: DB) -> None:
    body = {"streams": [{"stream": {"app": "a"}, "values": [[str(now_ns()), "once"]]}]}
    headers = {"Idempotency-Key": "loki-once-1"}
    first, second = (client.post(PUSH, json=body, headers=headers) for _ in range(2))
    assert (first.status_code, second.status_code) == (204, 204)
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert db.count() == 1


def test_a_redelivered_push_without_a_key_is_stored_once(client: TestClient, db: DB) -> None:
    # Promtail resends the same body when it did not see the answer: the body is the key.
    second_now = now_ns() // 10**9
    body = push_request([('{app="a"}', [(second_now, 1, "sent twice", [])])])
    first, second = (client.post(PUSH, content=snappy(body), headers=PROTOBUF) for _ in range(2))
    assert (first.status_code, second.status_code) == (204, 204)
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert db.count() == 1
    other = push_request([('{app="a"}', [(second_now, 2, "another batch", [])])])
    assert client.post(PUSH, content=snappy(other), headers=PROTOBUF).status_code == 204
    assert db.count() == 2


def test_loki_ready_answers_ready(client: TestClient) -> None:
    response = client.get("/loki/ready")
    assert (response.status_code, response.text) == (200, "ready\n")


def test_too_many_lines_are_a_413(client: TestClient, db: DB) -> None:
    lines = [(1, 0, "x", [])] * 100_001
    response = client.post(PUSH, content=snappy(push_request([('{app="a"}', lines)])), headers=PROTOBUF)
    assert response.status_code == 413 and "more than 100000 log lines" in response.json()["message"]
    assert db.count() == 0


# --- the real server: python-logging-loki and golden bodies ----------------------------------------------


def loki_logger(url: str, failures: list[BaseException], **options: Any) -> logging.Logger:
    """A `logging` logger sending through python-logging-loki, its failures (any answer but 204) kept."""

    class Handler(logging_loki.LokiHandler):
        def handleError(self, record: logging.LogRecord) -> None:
            failures.append(sys.exc_info()[1])  # type: ignore[arg-type]

    handler = Handler(
        url=url + PUSH, tags={"application": "billing", "env": "staging"}, version="1", **options
    )
    logger = logging.getLogger(f"billing.loki-test.{len(options)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger


def test_python_logging_loki_through_logging(server: tuple[subprocess.Popen[bytes], str], db: DB) -> None:
    _, url = server
    failures: list[BaseException] = []
    logger = loki_logger(url, failures)
    logger.warning("invoice %s overdue", "INV-7", extra={"tags": {"customer": "c-9"}})
    logger.error("charge failed")
    logger.critical("ledger out of balance")
    assert failures == []  # python-logging-loki raises on any answer but 204
    stored = db.fetch(
        "SELECT service, level::text AS level, environment::text AS env, message, metadata FROM logs ORDER BY id"
    )
    assert [(r["service"], r["level"], r["env"], r["message"]) for r in stored] == [
        ("billing", "WARN", "staging", "invoice INV-7 overdue"),
        ("billing", "ERROR", "staging", "charge failed"),
        ("billing", "FATAL", "staging", "ledger out of balance"),
    ]
    first = json.loads(stored[0]["metadata"])
    assert first["logger"] == "billing.loki-test.0" and first["customer"] == "c-9"


def test_python_logging_loki_reads_back_through_the_query_api(
    server: tuple[subprocess.Popen[bytes], str], db: DB
) -> None:
    """What the client pushed comes back as Loki returns it: its tags as the stream's labels (service_name
    derived from `application`), its lines as sent."""
    _, url = server
    failures: list[BaseException] = []
    logger = loki_logger(url, failures)
    logger.warning("invoice %s overdue", "INV-7", extra={"tags": {"customer": "c-9"}})
    logger.error("charge failed")
    assert failures == []
    params = {"query": '{application="billing", severity="error"}', "direction": "forward", "limit": 10}
    found = httpx.get(url + "/loki/api/v1/query_range", params=params).json()["data"]["result"]
    labels = {"application": "billing", "env": "staging", "severity": "error",
              "logger": "billing.loki-test.0", "service_name": "billing"}  # fmt: skip
    assert [(s["stream"], [v[1] for v in s["values"]]) for s in found] == [
        ({**labels, "detected_level": "error"}, ["charge failed"])
    ]
    params["query"] = '{customer="c-9"}'
    warned = httpx.get(url + "/loki/api/v1/query_range", params=params).json()["data"]["result"]
    assert [v[1] for s in warned for v in s["values"]] == ["invoice INV-7 overdue"]
    values = httpx.get(url + "/loki/api/v1/label/severity/values").json()["data"]
    assert values == ["error", "warning"]


def test_python_logging_loki_sends_an_api_key_as_basic_auth_and_ready_stays_open(
    database_url: str, db: DB, tmp_path: Path
) -> None:
    process, url = start_server({"DATABASE_URL": database_url, "INGEST_API_KEYS": "loki-key"}, tmp_path)
    try:
        refused: list[BaseException] = []
        loki_logger(url, refused).error("no key")
        assert len(refused) == 1 and "401" in str(refused[0])
        failures: list[BaseException] = []
        loki_logger(url, failures, auth=("logsave", "loki-key")).error("with the key")
        assert failures == []
        assert httpx.get(url + "/loki/ready").status_code == 200  # open, like /health/ready
    finally:
        process.kill()
        process.wait(10)
    assert [r["message"] for r in db.fetch("SELECT message FROM logs")] == ["with the key"]


def _moved_to_now(stamps: list[str]) -> dict[str, str]:
    shift = now_ns() - int(min(stamps))
    return {stamp: str(int(stamp) + shift) for stamp in stamps}


def golden_json(name: str) -> bytes:
    document = json.loads((GOLDEN / name).read_text())
    values = [value for stream in document["streams"] for value in stream["values"]]
    moved = _moved_to_now([value[0] for value in values])
    for value in values:
        value[0] = moved[value[0]]
    return json.dumps(document).encode()


def golden_protobuf(name: str) -> bytes:
    """A golden PushRequest (Loki's JSON form) as Promtail's client sends it: protobuf, snappy block."""
    document = json.loads((GOLDEN / name).read_text())
    moved = _moved_to_now([e["ts"] for s in document["streams"] for e in s["entries"]])
    streams = []
    for stream in document["streams"]:
        lines = []
        for e in stream["entries"]:
            seconds, nanos = divmod(int(moved[e["ts"]]), 10**9)
            lines.append(
                (
                    seconds,
                    nanos,
                    e["line"],
                    [(p["name"], p["value"]) for p in e.get("structuredMetadata", [])],
                )
            )
        streams.append((stream["labels"], lines))
    return snappy(push_request(streams))


GOLDEN_CASES = {
    "loki-api-push.json": [
        ("checkout", "WARN", "staging", "fizzbuzz", {"region": "eu-west-1"}),
        ("checkout", "WARN", "staging", "card declined",
         {"region": "eu-west-1", "trace_id": "0242ac120002", "user_id": "superUser123"}),
    ],
    "fluent-bit-loki.json": [
        ("fluent-bit", "INFO", "development", "GET /health 200", {"host": "web-1", "stream": "stdout"}),
        ("fluent-bit", "ERROR", "development", "upstream timed out", {"host": "web-1", "stream": "stderr"}),
    ],
    "vector-loki.json": [
        ("payments", "INFO", "production", "payment authorized", {"source_type": "file", "host": "pay-1"}),
        ("payments", "ERROR", "production", "payment failed", {"source_type": "file"}),
    ],
    "promtail.json": [
        ("api", "ERROR", "development", "connection refused to db-1:5432",
         {"filename": "/var/log/app/api.log", "host": "web-1"}),
        ("api", "ERROR", "development", 'retry 2 of 3 "db-1"', {"filename": "/var/log/app/api.log", "host": "web-1"}),
    ],
    "alloy.json": [
        ("inventory", "WARN", "development", "stock low",
         {"filename": "/var/log/inventory.log", "sku": "sku-7", "pod": "inventory-7d9f"}),
    ],
    "docker-driver.json": [
        ("docker", "INFO", "development", '172.18.0.1 - - "GET / HTTP/1.1" 200 615',
         {"compose_project": "shop", "compose_service": "web", "container_name": "shop-web-1", "host": "docker-host",
          "filename": "/var/lib/docker/containers/abc/abc-json.log"}),
    ],
}  # fmt: skip
PROTOBUF_GOLDEN = ("promtail.json", "alloy.json", "docker-driver.json")


@pytest.mark.parametrize("name", list(GOLDEN_CASES))
def test_golden_bodies_of_the_agents_land_in_the_right_columns(
    server: tuple[subprocess.Popen[bytes], str], db: DB, name: str
) -> None:
    _, url = server
    if name in PROTOBUF_GOLDEN:
        response = httpx.post(url + PUSH, content=golden_protobuf(name), headers=PROTOBUF)
    else:
        # Vector and Fluent Bit may gzip their JSON.
        body = golden_json(name)
        response = httpx.post(
            url + PUSH,
            content=gzip.compress(body),
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )
    assert response.status_code == 204, response.text
    stored = db.fetch(
        "SELECT service, level::text AS level, environment::text AS env, message, metadata, trace_id, user_id, "
        "created_at FROM logs ORDER BY created_at, id"
    )
    got = [
        (r["service"], r["level"], r["env"], r["message"], json.loads(r["metadata"] or "{}")) for r in stored
    ]
    assert got == GOLDEN_CASES[name]
    assert all(abs((r["created_at"] - datetime.now(UTC)).total_seconds()) < 600 for r in stored)
    if name == "alloy.json":
        assert stored[0]["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    if name == "vector-loki.json":
        assert stored[0]["user_id"] == "u-42"


def test_an_idempotency_key_reused_with_another_body_is_a_422(client: TestClient, db: DB) -> None:
    headers = {"Idempotency-Key": "loki-reused-1"}
    first = {"streams": [{"stream": {"app": "a"}, "values": [[str(now_ns()), "first"]]}]}
    second = {"streams": [{"stream": {"app": "a"}, "values": [[str(now_ns()), "second"]]}]}
    assert client.post(PUSH, json=first, headers=headers).status_code == 204
    response = client.post(PUSH, json=second, headers=headers)
    assert response.status_code == 422 and response.json()["error"] == "idempotency_key_reused"
    assert [r["message"] for r in db.fetch("SELECT message FROM logs")] == ["first"]


def test_503_when_postgresql_is_away(db: DB) -> None:
    # Not committed -> 503, which Promtail and Alloy retry.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    app = create_app(make_settings(f"postgresql://postgres@127.0.0.1:{closed}/none", db_acquire_timeout=2))
    client = TestClient(app)  # no lifespan: the pool is opened (and fails) on first use
    body = {"streams": [{"stream": {"app": "a"}, "values": [[str(now_ns()), "x"]]}]}
    response = client.post(PUSH, json=body)
    assert response.status_code == 503 and int(response.headers["Retry-After"]) >= 1
