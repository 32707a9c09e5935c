"""GET /logs and GET /traces/{id} against a real PostgreSQL: every filter against the same query written
plainly in SQL, pagination that is complete while ingest continues, the NDJSON export, traces."""

from __future__ import annotations

import functools
import json
import random
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app import query
from app.main import create_app
from tests.support import DB, log_entry, make_settings

NOW = datetime.now(UTC).replace(microsecond=0)
SERVICES = ["api", "web", "cron", "pay"]
LEVELS = ["DEBUG", "INFO", "WARN", "ERROR", "FATAL"]


def sample(n: int, seed: int = 1) -> list[dict[str, Any]]:
    r = random.Random(seed)
    return [
        log_entry(
            service=r.choice(SERVICES),
            level=r.choice(LEVELS),
            environment=r.choice(["production", "staging"]),
            message=r.choice(["Payment DECLINED for order", "user 50% done", "cache miss", "timeout_x"])
            + f" {i}",
            created_at=(NOW - timedelta(minutes=r.randrange(0, 60 * 48))).isoformat(),
            trace_id=f"t{i % 17}" if i % 7 else None,
            user_id=f"u{i % 5}",
            session_id=f"s{i % 3}",
            metadata={
                "status": r.choice([200, 404, 500]),
                "region": r.choice(["eu", "us"]),
                "http": {"status": r.choice([200, 500]), "route": {"name": r.choice(["a", "b"])}},
                "k.dot": r.choice(["x", "y"]),
            }
            if i % 10
            else None,
        )
        for i in range(n)
    ]


@pytest.fixture
def loaded(client: TestClient, db: DB) -> TestClient:
    entries = sample(600)
    for start in range(0, len(entries), 200):
        assert (
            client.post("/logs", content=json.dumps({"logs": entries[start : start + 200]})).status_code
            == 200
        )
    db.fetch("UPDATE logs SET deleted = TRUE WHERE id % 50 = 0")
    return client


def all_pages(client: TestClient, params: dict[str, Any]) -> list[dict[str, Any]]:
    logs: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):  # bounded
        response = client.get("/logs", params={**params, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        page = response.json()
        logs += page["logs"]
        cursor = page["next_cursor"]
        if cursor is None:
            return logs
    raise AssertionError("pagination did not end")


def ids_in_sql(db: DB, where: str, *args: Any) -> list[int]:
    rows = db.fetch(
        f"SELECT id FROM logs WHERE NOT deleted AND {where} ORDER BY created_at DESC, id DESC", *args
    )
    return [r["id"] for r in rows]


SINCE = (NOW - timedelta(hours=20)).isoformat()
UNTIL = (NOW - timedelta(hours=5)).isoformat()


@pytest.mark.parametrize(
    ("params", "where", "args"),
    [
        ({}, "TRUE", []),
        ({"since": SINCE}, "created_at >= $1", [datetime.fromisoformat(SINCE)]),
        ({"until": UNTIL}, "created_at < $1", [datetime.fromisoformat(UNTIL)]),
        (
            {"since": str(int((NOW - timedelta(hours=3)).timestamp() * 1000))},
            "created_at >= $1",
            [NOW - timedelta(hours=3)],
        ),
        ({"service": ["api", "cron"]}, "service IN ('api', 'cron')", []),
        ({"level": ["error", "FATAL"]}, "level IN ('ERROR', 'FATAL')", []),
        ({"min_level": "WARN"}, "level IN ('WARN', 'ERROR', 'FATAL')", []),
        ({"environment": "staging"}, "environment = 'staging'", []),
        ({"trace_id": "t3"}, "trace_id = 't3'", []),
        ({"user_id": "u1", "session_id": "s2"}, "user_id = 'u1' AND session_id = 's2'", []),
        ({"q": "declined"}, "message ILIKE '%declined%'", []),
        ({"q": "50%"}, "position('50%' in message) > 0", []),
        ({"q": "t_x"}, "position('t_x' in message) > 0", []),
        ({"meta.status": "500"}, "metadata->'status' = '500'", []),
        ({"meta.region": "eu", "service": "web"}, "metadata->>'region' = 'eu' AND service = 'web'", []),
        ({"meta.http.status": "500"}, "metadata->'http'->'status' = '500'", []),
        ({"meta.http.route.name": "b"}, "metadata->'http'->'route'->>'name' = 'b'", []),
        ({"meta.k\\.dot": "y"}, "metadata->>'k.dot' = 'y'", []),
        ({"not.service": ["api", "cron"]}, "service NOT IN ('api', 'cron')", []),
        ({"not.level": ["error", "FATAL"]}, "level NOT IN ('ERROR', 'FATAL')", []),
        ({"not.environment": "staging"}, "environment <> 'staging'", []),
        ({"not.trace_id": ["t3", "t4"]}, "(trace_id IS NULL OR trace_id NOT IN ('t3', 't4'))", []),
        ({"not.user_id": "u1", "not.session_id": "s2"}, "user_id <> 'u1' AND session_id <> 's2'", []),
        ({"not.meta.region": "eu"}, "metadata->>'region' IS DISTINCT FROM 'eu'", []),
        (
            {"not.meta.http.status": "500", "service": "api"},
            "(metadata->'http'->'status') IS DISTINCT FROM '500' AND service = 'api'",
            [],
        ),
        (
            {"limit": "7", "min_level": "ERROR", "since": SINCE},
            "level >= 'ERROR' AND created_at >= $1",
            [datetime.fromisoformat(SINCE)],
        ),
    ],
)
def test_each_filter_matches_plain_sql(
    loaded: TestClient, db: DB, params: dict[str, Any], where: str, args: list[Any]
) -> None:
    expected = ids_in_sql(db, where, *args)
    assert expected, "the sample must hold matches for every filter"
    got = [log["id"] for log in all_pages(loaded, params)]
    assert got == expected


@pytest.mark.parametrize(
    ("key", "path"),
    [
        ("region", ["region"]),
        ("http.status", ["http", "status"]),
        ("a\\.b.c", ["a.b", "c"]),
        ("C:\\\\x", ["C:\\x"]),
        ("end\\", ["end\\"]),
    ],
)
def test_a_meta_key_is_a_dotted_path_with_escapes(key: str, path: list[str]) -> None:
    assert query.meta_path(key) == path
    assert query.meta_document(path, 1) == functools.reduce(lambda doc, k: {k: doc}, reversed(path), 1)


def test_a_log_comes_back_with_every_column(client: TestClient, db: DB) -> None:
    entry = log_entry(
        level="ERROR", log_type="MOBILE", environment="staging", service_version="2.0", trace_id="abc",
        user_id="u", session_id="s", error_type="E", stack_trace="Traceback\n  line 1", path="/p", method="POST",
        action_type="a", function_name="f", file_path="x.py", duration_ms=1.5, metadata={"k": [1, {"a": None}]},
        created_at=(NOW - timedelta(hours=1)).replace(microsecond=123456).isoformat(),
    )  # fmt: skip
    assert client.post("/logs", content=json.dumps({"logs": [entry]})).status_code == 200
    (log,) = client.get("/logs").json()["logs"]
    stored = db.fetch("SELECT id, created_at FROM logs")[0]
    assert log["id"] == stored["id"]
    assert datetime.fromisoformat(log["created_at"]) == stored["created_at"]
    for key, value in entry.items():
        if key != "created_at":
            assert log[key] == value, key


def test_pages_are_complete_and_stable_while_ingest_continues(loaded: TestClient, db: DB) -> None:
    before = ids_in_sql(db, "TRUE")
    stop = threading.Event()

    def ingest() -> None:
        for i in range(200):
            if stop.is_set():
                return
            fresh = [log_entry(message=f"new {i}", created_at=NOW.isoformat())]
            loaded.post("/logs", content=json.dumps({"logs": fresh}))

    writer = threading.Thread(target=ingest)
    writer.start()
    try:
        got = [
            log["id"]
            for log in all_pages(loaded, {"limit": "13", "until": (NOW - timedelta(seconds=1)).isoformat()})
        ]
    finally:
        stop.set()
        writer.join(30)
    assert got == before  # no gaps, no repeats, nothing new slipped in behind the cursor
    assert len(set(got)) == len(got)


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("1764244800", datetime(2025, 11, 27, 12, tzinfo=UTC)),
        ("1764244800.25", datetime(2025, 11, 27, 12, 0, 0, 250000, tzinfo=UTC)),
        ("1764244800250", datetime(2025, 11, 27, 12, 0, 0, 250000, tzinfo=UTC)),
        # The unit is the whole part's: float() would round this to 1e11, read as milliseconds (1973).
        ("99999999999.9999999", datetime(5138, 11, 16, 9, 46, 39, 999999, tzinfo=UTC)),
        ("99999999999999999999", datetime(5138, 11, 16, 9, 46, 39, 999999, tzinfo=UTC)),
    ],
)
def test_a_unix_time_is_read_as_the_document_states_it(text: str, moment: datetime) -> None:
    assert re.fullmatch(query.MOMENT_SCHEMA["anyOf"][1]["pattern"].strip("^$"), text)
    assert abs(query.moment(text) - moment) < timedelta(microseconds=2)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "yesterday"}, "query.since"),
        # What float() takes beyond the documented digits: 422, not a time.
        ({"since": "1_764_244_800"}, "query.since"),
        ({"since": " 1764244800"}, "query.since"),
        ({"until": "+1764244800"}, "query.until"),
        ({"until": "1.7e9"}, "query.until"),
        ({"since": "100000000000000000000"}, "query.since"),
        ({"level": "LOUD"}, "query.level"),
        ({"min_level": "x"}, "query.min_level"),
        ({"environment": "prod"}, "query.environment"),
        ({"limit": "0"}, "query.limit"),
        ({"limit": "1001"}, "query.limit"),
        ({"cursor": "not-a-cursor"}, "query.cursor"),
        ({"servce": "api"}, "query.servce"),
        ({"q": ["a", "b"]}, "query.q"),
        ({"not.servce": "api"}, "query.not.servce"),
        ({"not.q": "x"}, "query.not.q"),
        ({"not.level": "LOUD"}, "query.not.level"),
        ({"not.environment": "prod"}, "query.not.environment"),
        ({"not.trace_id": "x" * 33}, "query.not.trace_id"),
        ({"meta.a..b": "1"}, "query.meta.a..b"),
        ({"not.meta.a.": "1"}, "query.not.meta.a."),
    ],
)
def test_a_bad_filter_is_a_422_naming_it(client: TestClient, params: dict[str, Any], field: str) -> None:
    response = client.get("/logs", params=params)
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_query"
    assert [e["field"] for e in response.json()["errors"]] == [field]


def test_ndjson_export_streams_every_match(loaded: TestClient, db: DB) -> None:
    with loaded.stream(
        "GET", "/logs", params={"min_level": "WARN"}, headers={"Accept": "application/x-ndjson"}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert [log["id"] for log in lines] == ids_in_sql(db, "level >= 'WARN'")


def test_a_trace_comes_back_in_time_order(loaded: TestClient, db: DB) -> None:
    response = loaded.get("/traces/t5")
    assert response.status_code == 200
    body = response.json()
    assert body["trace_id"] == "t5"
    expected = db.fetch("SELECT id FROM logs WHERE trace_id = 't5' AND NOT deleted ORDER BY created_at, id")
    assert [log["id"] for log in body["logs"]] == [r["id"] for r in expected]
    assert loaded.get("/traces/unknown").json() == {"trace_id": "unknown", "logs": []}
    assert loaded.get("/traces/" + "x" * 33).status_code == 422


def test_a_query_past_the_timeout_is_a_422_that_says_so(db: DB, database_url: str) -> None:
    with TestClient(create_app(make_settings(database_url, query_timeout=0.001))) as client:
        # 200,000 rows no filter matches (in today's partition, which the app made at start-up): a scan
        # of them takes far longer than the 1 ms allowed.
        db.fetch(
            "INSERT INTO logs (created_at, log_type, service, message)"
            " SELECT now(), 'BACKEND', 's', 'm' FROM generate_series(1, 200000)"
        )
        response = client.get("/logs", params={"q": "no such text anywhere"})
    assert response.status_code == 422 and response.json()["error"] == "query_timeout"
    assert "since/until" in response.json()["message"]


@pytest.fixture
def keyed(db: DB, database_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(database_url, api_keys="reader", ingest_api_keys="app"))) as c:
        yield c


def test_reading_needs_a_read_key(keyed: TestClient) -> None:
    assert keyed.get("/logs").status_code == 401
    assert keyed.get("/logs", headers={"X-API-Key": "app"}).status_code == 403
    assert keyed.get("/traces/t", headers={"X-API-Key": "app"}).status_code == 403
    assert keyed.get("/logs", headers={"X-API-Key": "reader"}).status_code == 200


def test_an_empty_cursor_is_a_422_as_the_document_says(loaded: TestClient) -> None:
    spec = loaded.get("/openapi.json").json()
    (cursor,) = [p for p in spec["paths"]["/logs"]["get"]["parameters"] if p["name"] == "cursor"]
    assert cursor["schema"]["minLength"] == 1
    response = loaded.get("/logs", params={"cursor": ""})
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["query.cursor"]
    # Every cursor the server makes is one the document's pattern allows.
    made = loaded.get("/logs", params={"limit": 1}).json()["next_cursor"]
    assert re.fullmatch(cursor["schema"]["pattern"].strip("^$"), made)
    assert loaded.get("/logs", params={"cursor": made}).status_code == 200
