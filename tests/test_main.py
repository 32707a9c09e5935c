"""The HTTP contract of POST /logs and the other endpoints, against a real PostgreSQL."""

from __future__ import annotations

import gzip
import json
import socket
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import zstandard
from fastapi.testclient import TestClient

from app.main import create_app
from tests.support import DB, log_entry, make_settings

JSON = {"Content-Type": "application/json"}
# A created_at well inside the window taken as given (app/intake/rows.py), with milliseconds.
RECENT = (datetime.now(UTC) - timedelta(days=2)).replace(microsecond=678000)


def post(client: TestClient, payload: Any, headers: dict[str, str] | None = None) -> Any:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return client.post("/logs", content=raw, headers={**JSON, **(headers or {})})


def test_a_batch_is_committed_before_the_answer(client: TestClient, db: DB) -> None:
    entries = [log_entry(message=f"m{i}", trace_id=f"t{i}", duration_ms=i + 0.5) for i in range(25)]
    response = post(client, {"logs": entries})
    assert response.status_code == 200
    assert response.json() == {"saved": 25, "status": "success"}
    rows = db.fetch("SELECT message, trace_id, duration_ms, deleted FROM logs ORDER BY id")
    assert [r["message"] for r in rows] == [f"m{i}" for i in range(25)]
    assert rows[3]["trace_id"] == "t3" and float(rows[3]["duration_ms"]) == 3.5
    assert not any(r["deleted"] for r in rows)


def test_every_column_round_trips(client: TestClient, db: DB) -> None:
    entry = log_entry(
        level="warning", log_type="mobile", environment="STAGING", service_version="2.3.1",
        trace_id="a" * 32, user_id="u-1", session_id="s-1", error_type="TimeoutError",
        stack_trace="Traceback...\n  line 1", path="/api/orders", method="patch", action_type="click",
        function_name="place_order", file_path="app/orders.py", duration_ms=12.3456,
        created_at=RECENT.isoformat(), metadata={"http": {"status": 504}},
    )  # fmt: skip
    assert post(client, {"logs": [entry]}).status_code == 200
    (row,) = db.fetch("SELECT *, level::text AS lv, method::text AS mt FROM logs")
    assert row["lv"] == "WARN" and row["mt"] == "PATCH"
    assert row["log_type"] == "MOBILE" and row["environment"] == "staging"
    assert row["created_at"] == RECENT
    assert str(row["duration_ms"]) == "12.346"
    assert json.loads(row["metadata"]) == {"http": {"status": 504}}
    for field in ("service_version", "trace_id", "user_id", "session_id", "error_type", "stack_trace", "path",
                  "action_type", "function_name", "file_path"):  # fmt: skip
        assert row[field] == entry[field]


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("gzip", gzip.compress), ("deflate", zlib.compress), ("zstd", zstandard.compress)],
)
def test_compressed_batches_are_stored(client: TestClient, db: DB, encoding: str, compress: Any) -> None:
    raw = compress(json.dumps({"logs": [log_entry()] * 10}).encode())
    response = post(client, raw, {"Content-Encoding": encoding})
    assert response.status_code == 200, response.text
    assert db.count() == 10


def test_unknown_fields_and_nul_are_stored_not_dropped(client: TestClient, db: DB) -> None:
    entry = log_entry(message="before\x00after", region="eu-1", metadata={"a\x00": "b\x00"})
    assert post(client, {"logs": [entry]}).status_code == 200
    (row,) = db.fetch("SELECT message, metadata FROM logs")
    assert row["message"] == "before\ufffdafter"
    assert json.loads(row["metadata"]) == {"a\ufffd": "b\ufffd", "region": "eu-1"}


def test_created_at_defaults_to_receive_time(client: TestClient, db: DB) -> None:
    before = datetime.now(UTC)
    assert post(client, {"logs": [log_entry(), log_entry(created_at=0)]}).status_code == 200
    first, second = db.fetch("SELECT created_at, metadata FROM logs ORDER BY id")
    assert before - timedelta(seconds=1) <= first["created_at"] <= datetime.now(UTC)
    # 1970 is a clock that was never set: stored as received, the original kept beside it.
    assert before - timedelta(seconds=1) <= second["created_at"] <= datetime.now(UTC)
    assert json.loads(second["metadata"]) == {"original_created_at": "1970-01-01T00:00:00+00:00"}


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code
    assert body["message"]
    return body


@pytest.mark.parametrize(
    ("raw", "headers", "message"),
    [
        (b'{"logs": [{"level": "INFO",', {}, "not valid JSON"),
        (b'{"logs": [{"level": "INFO", "service": "a", "message": "\xff\xfe"}]}', {}, "not valid UTF-8 JSON"),
        (b"PK\x03\x04 a zip, not gzip", {"Content-Encoding": "gzip"}, "not valid gzip"),
        (gzip.compress(b'{"logs": []}' * 10)[:-6], {"Content-Encoding": "gzip"}, "truncated"),
    ],
)
def test_400_for_malformed_bodies(
    client: TestClient, db: DB, raw: bytes, headers: dict[str, str], message: str
) -> None:
    assert message in _error(post(client, raw, headers), 400, "bad_request")["message"]
    assert db.count() == 0


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/x-www-form-urlencoded"},
        {"Content-Encoding": "br"},
    ],
)
def test_415_for_unsupported_media(client: TestClient, db: DB, headers: dict[str, str]) -> None:
    _error(post(client, {"logs": [log_entry()]}, headers), 415, "unsupported_media_type")
    assert db.count() == 0


def test_413_for_a_body_over_the_cap_on_the_wire(db: DB, database_url: str) -> None:
    with TestClient(create_app(make_settings(database_url, max_body_bytes=2048))) as client:
        entries = [log_entry(message="x" * 100) for _ in range(30)]
        assert "limit is 2048" in _error(post(client, {"logs": entries}), 413, "payload_too_large")["message"]
    assert db.count() == 0


def test_413_for_a_gzip_bomb(client: TestClient, db: DB) -> None:
    # 12 MiB of spaces around a valid batch expands past the 10 MiB default from about 12 KiB of gzip.
    bomb = gzip.compress(b'{"logs": [' + json.dumps(log_entry()).encode() + b" " * (12 * 1024 * 1024) + b"]}")
    assert len(bomb) < 20_000
    body = _error(post(client, bomb, {"Content-Encoding": "gzip"}), 413, "payload_too_large")
    assert "decompressed body exceeds" in body["message"]
    assert db.count() == 0


def test_422_names_each_bad_entry_and_stores_nothing(client: TestClient, db: DB) -> None:
    entries = [log_entry(), log_entry(level="LOUD"), log_entry(), {"level": "INFO", "message": "m"}]
    body = _error(post(client, {"logs": entries}), 422, "validation_failed")
    assert [e["field"] for e in body["errors"]] == ["logs.1.level", "logs.3.service"]
    assert body["error_count"] == 2
    assert "logs.1.level" in body["message"]
    assert db.count() == 0


def test_422_for_too_many_logs(db: DB, database_url: str) -> None:
    with TestClient(create_app(make_settings(database_url, max_batch_size=5))) as client:
        body = _error(post(client, {"logs": [log_entry()] * 6}), 422, "validation_failed")
        assert body["errors"][0]["field"] == "logs"
        assert post(client, {"logs": [log_entry()] * 5}).status_code == 200
    assert db.count() == 5


def test_422_error_list_is_capped_but_counted(client: TestClient, db: DB) -> None:
    body = _error(post(client, {"logs": [{"level": "INFO"}] * 300}), 422, "validation_failed")
    assert len(body["errors"]) == 100
    assert body["error_count"] == 600


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_503_with_retry_after_when_postgres_is_unreachable() -> None:
    url = f"postgresql://postgres@127.0.0.1:{_closed_port()}/logs_db"
    app = create_app(make_settings(url, db_acquire_timeout=2))
    client = TestClient(app)  # no lifespan: the pool is opened (and fails) on first use
    response = post(client, {"logs": [log_entry()]})
    body = _error(response, 503, "service_unavailable")
    assert response.headers["Retry-After"] == "1"
    assert "database unavailable" in body["message"]
    _error(client.get("/health/ready"), 503, "service_unavailable")
    _error(client.get("/stats"), 503, "service_unavailable")


def test_health(client: TestClient) -> None:
    assert client.get("/").json() == {"status": "healthy", "service": "log-save-server", "version": "1.0.0"}
    assert client.get("/health/ready").json()["status"] == "healthy"


def test_stats_counts_are_exact(client: TestClient, db: DB) -> None:
    old = (datetime.now(UTC) - timedelta(days=3)).isoformat()
    batches = [
        [log_entry(service="api", level="ERROR")] * 7 + [log_entry(service="api", level="INFO")] * 5,
        [log_entry(service="web", level="WARN")] * 3
        + [log_entry(service="web", level="INFO", created_at=old)] * 2,
        [log_entry(service="cron", level="DEBUG")],
    ]
    for batch in batches:
        assert post(client, {"logs": batch}).status_code == 200
    db.fetch("UPDATE logs SET deleted = TRUE WHERE id = (SELECT min(id) FROM logs WHERE service = 'cron')")
    assert client.get("/stats").json() == {
        "total_logs": 17,
        "services": [{"service": "api", "count": 12}, {"service": "web", "count": 5}],
        "by_level": {"ERROR": 7, "INFO": 7, "WARN": 3},
        "recent_24h": 15,
    }


def test_openapi_documents_the_body_and_every_error(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    post_logs = spec["paths"]["/logs"]["post"]
    shapes = post_logs["requestBody"]["content"]["application/json"]["schema"]["anyOf"]
    assert shapes[0] == {"$ref": "#/components/schemas/LogBatch"}
    assert shapes[1]["items"] == {"$ref": "#/components/schemas/LogEntry"}
    assert set(post_logs["responses"]) >= {"200", "400", "413", "415", "422", "503"}
    entry = spec["components"]["schemas"]["LogEntry"]
    assert set(entry["required"]) == {"level", "service", "message"}
    assert entry["properties"]["trace_id"]["anyOf"][0]["maxLength"] == 32
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize(
    ("body", "taken"),
    [
        ({"logs": [log_entry()]}, True),
        ([log_entry(), log_entry()], True),  # a shipper's array
        ([], False),
        ({"logs": []}, False),
        ([log_entry()] * 1001, False),
        ([{"level": "INFO"}], False),
        ({"logs": [log_entry()], "extra": 1}, False),
    ],
)
def test_the_document_says_which_bodies_post_logs_takes(
    client: TestClient, db: DB, body: Any, taken: bool
) -> None:
    import jsonschema

    spec = client.get("/openapi.json").json()
    schema = spec["paths"]["/logs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    validator = jsonschema.Draft202012Validator({**schema, "components": spec["components"]})
    assert validator.is_valid(body) is taken
    response = post(client, body)
    assert (response.status_code == 200) is taken, response.text
    assert db.count() == (len(body) if isinstance(body, list) else 1) * taken


def test_cors_preflight_allows_configured_origins(db: DB, database_url: str) -> None:
    settings = make_settings(database_url, cors_origins="https://a.example, https://b.example")
    with TestClient(create_app(settings)) as client:
        headers = {"Origin": "https://b.example", "Access-Control-Request-Method": "POST",
                   "Access-Control-Request-Headers": "content-type,content-encoding"}  # fmt: skip
        allowed = client.options("/logs", headers=headers)
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://b.example"
        denied = client.options("/logs", headers={**headers, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in denied.headers


def test_unknown_routes_answer_json(client: TestClient) -> None:
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "message": "Not Found"}
    assert client.put("/logs").status_code == 405


def test_cors_headers_on_the_fast_route_and_its_errors(client: TestClient, db: DB) -> None:
    ok = post(client, {"logs": [log_entry()]}, {"Origin": "https://app.example"})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "*"
    refused = post(client, {"logs": [log_entry(level="LOUD")]}, {"Origin": "https://app.example"})
    assert refused.status_code == 422 and refused.headers["access-control-allow-origin"] == "*"


def test_post_logs_is_served_under_a_root_path(db: DB, database_url: str) -> None:
    with TestClient(create_app(make_settings(database_url)), root_path="/prod") as client:
        assert post(client, {"logs": [log_entry()]}).json() == {"saved": 1, "status": "success"}
    assert db.count() == 1


def test_a_body_without_content_type_is_read_as_json(client: TestClient, db: DB) -> None:
    raw = json.dumps({"logs": [log_entry()]}).encode()
    response = client.post("/logs", content=raw, headers={"Content-Type": ""})
    assert response.status_code == 200, response.text
    assert db.count() == 1


def test_partial_stores_the_valid_entries_and_names_the_rest(client: TestClient, db: DB) -> None:
    entries = [log_entry(message="a"), log_entry(level="LOUD"), log_entry(message="b"), {"level": "INFO"}]
    response = client.post("/logs?partial=true", content=json.dumps({"logs": entries}), headers=JSON)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["saved"] == 2 and body["status"] == "partial"
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [
        (1, "logs.1.level"),
        (3, "logs.3.service"),
        (3, "logs.3.message"),
    ]
    assert [r["message"] for r in db.fetch("SELECT message FROM logs ORDER BY id")] == ["a", "b"]


def test_partial_with_nothing_wrong_is_a_success(client: TestClient, db: DB) -> None:
    response = client.post("/logs?partial=true", content=json.dumps({"logs": [log_entry()]}), headers=JSON)
    assert response.json() == {"saved": 1, "status": "success", "rejected": []}


def test_partial_with_nothing_valid_is_still_a_422(client: TestClient, db: DB) -> None:
    response = client.post(
        "/logs?partial=true", content=json.dumps({"logs": [{"level": "INFO"}]}), headers=JSON
    )
    _error(response, 422, "validation_failed")
    _error(client.post("/logs?partial=maybe", content=b"{}", headers=JSON), 400, "bad_request")
    assert db.count() == 0


def test_a_utf8_bom_is_ignored(client: TestClient, db: DB) -> None:
    raw = b"\xef\xbb\xbf" + json.dumps({"logs": [log_entry()]}).encode()
    assert post(client, raw).status_code == 200
    assert db.count() == 1


@pytest.mark.parametrize(
    ("metadata", "status"),
    [
        (b'{"a":' * 65 + b"1" + b"}" * 65, 422),  # past the documented 64 levels
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, 400),  # deep enough to break a recursive decoder
        (b'{"a":' + b"[" * 20000 + b"]" * 20000 + b"}", 400),
    ],
)
def test_deep_nesting_is_refused_by_name(client: TestClient, db: DB, metadata: bytes, status: int) -> None:
    raw = b'{"logs":[{"level":"INFO","service":"s","message":"m","metadata":' + metadata + b"}]}"
    body = _error(post(client, raw), status, "validation_failed" if status == 422 else "bad_request")
    assert "nest" in body["message"]
    assert db.count() == 0


def test_metadata_nested_64_levels_is_kept(client: TestClient, db: DB) -> None:
    metadata = b'{"a":' * 63 + b"[1]" + b"}" * 63
    raw = b'{"logs":[{"level":"INFO","service":"s","message":"m","metadata":' + metadata + b"}]}"
    assert post(client, raw).status_code == 200
    assert db.count() == 1


def test_epoch_milliseconds_from_javascript_are_stored(client: TestClient, db: DB) -> None:
    millis = int(RECENT.timestamp() * 1000)
    assert post(client, {"logs": [log_entry(created_at=millis)]}).status_code == 200
    (row,) = db.fetch("SELECT created_at FROM logs")
    assert row["created_at"] == datetime.fromtimestamp(millis / 1000, UTC)


def test_the_timeline_counts_by_minute_or_by_hour(client: TestClient, db: DB) -> None:
    now = datetime.now(UTC).replace(second=30, microsecond=0)
    entries = [log_entry(level=level, created_at=(now - timedelta(minutes=m)).isoformat())
               for m, level in [(1, "INFO"), (1, "ERROR"), (1, "INFO"), (3, "WARN"), (130, "INFO")]]  # fmt: skip
    assert post(client, {"logs": entries}).status_code == 200
    since = (now - timedelta(hours=1)).isoformat()
    minutes = client.get("/stats/timeline", params={"since": since}).json()
    assert minutes["bucket"] == "minute"
    by_minute = {p["at"]: p["counts"] for p in minutes["points"]}
    minute = lambda m: (now - timedelta(minutes=m)).replace(second=0).isoformat()
    assert by_minute == {minute(3): {"WARN": 1}, minute(1): {"ERROR": 1, "INFO": 2}}
    hours = client.get("/stats/timeline", params={"since": (now - timedelta(days=2)).isoformat()}).json()
    assert hours["bucket"] == "hour" and sum(sum(p["counts"].values()) for p in hours["points"]) == 5
    assert client.get("/stats/timeline", params={"since": "yesterday"}).status_code == 422
    twice = client.get("/stats/timeline", params=[("since", "1764244800"), ("since", "1764248400")])
    assert twice.status_code == 422 and twice.json()["errors"][0]["field"] == "query.since"
