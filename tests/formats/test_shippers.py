"""POST /logs from shippers: JSON arrays and NDJSON as Vector's `http` sink and Fluent Bit's `http` output
send them (golden bodies in tests/golden/shippers/, built from their documentation), aliases, query defaults."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support import DB

GOLDEN = Path(__file__).parent.parent / "golden" / "shippers"


def golden(name: str) -> bytes:
    # The golden files carry fixed times; move them to now, keeping their format, so they stay inside the
    # window of times taken as given (app/intake/rows.py) whenever the tests run.
    raw = (GOLDEN / name).read_bytes().decode()
    shift = datetime.now(UTC).replace(microsecond=0) - datetime(2026, 11, 28, 4, 10, tzinfo=UTC)
    raw = raw.replace(
        "2026-11-28T04:10", (datetime(2026, 11, 28, 4, 10, tzinfo=UTC) + shift).strftime("%Y-%m-%dT%H:%M")
    )
    for stamp in ("1795838415", "1795838416", "1795838417", "1795838418"):
        raw = raw.replace(stamp, str(int(stamp) + int(shift.total_seconds())))
    return raw.encode()


def stored(db: DB) -> list[Any]:
    return db.fetch(
        "SELECT service, level::text AS level, message, created_at, metadata FROM logs ORDER BY id"
    )


@pytest.mark.parametrize(
    ("name", "content_type", "query"),
    [
        ("vector-json-array.json", "application/json", "?service=web&level=INFO"),
        ("vector-ndjson.ndjson", "application/x-ndjson", "?service=worker&level=INFO"),
        ("fluent-bit-json.json", "application/json", "?service=nginx&level=INFO&environment=production"),
        ("fluent-bit-json-lines.ndjson", "application/x-ndjson", "?service=cron&level=INFO"),
    ],
)
def test_shipper_bodies_are_stored(
    client: TestClient, db: DB, name: str, content_type: str, query: str
) -> None:
    body = gzip.compress(golden(name))
    response = client.post(
        "/logs" + query, content=body, headers={"Content-Type": content_type, "Content-Encoding": "gzip"}
    )
    assert response.status_code == 200, response.text
    rows = stored(db)
    assert len(rows) == 2 and response.json()["saved"] == 2
    service = query.split("service=")[1].split("&")[0]
    assert {r["service"] for r in rows} == {service}
    assert all(r["message"] and datetime.now(UTC) - r["created_at"] < timedelta(days=1) for r in rows)
    for row in rows:
        metadata = json.loads(row["metadata"])
        # The aliases became columns and are not kept twice; the shipper's other fields went to metadata.
        assert not {"msg", "log", "timestamp", "date", "severity"} & set(metadata)
        assert {"host", "stream"} & set(metadata)


def test_aliases_and_an_entrys_own_values_win(client: TestClient, db: DB) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    entries = [
        {"msg": "from msg", "severity": "warning", "@timestamp": now.isoformat()},
        {"log": "from log", "time": int(now.timestamp() * 1000), "service": "own", "level": "ERROR"},
        {"message": "kept", "msg": "not used", "timestamp": now.timestamp()},
    ]
    response = client.post("/logs?service=default&level=DEBUG", content=json.dumps(entries))
    assert response.status_code == 200, response.text
    rows = stored(db)
    assert [(r["service"], r["level"], r["message"]) for r in rows] == [
        ("default", "WARN", "from msg"), ("own", "ERROR", "from log"), ("default", "DEBUG", "kept")]  # fmt: skip
    assert all(r["created_at"] == now for r in rows)
    assert json.loads(rows[2]["metadata"]) == {"msg": "not used"}


def test_query_defaults_apply_to_the_native_body_too(client: TestClient, db: DB) -> None:
    response = client.post(
        "/logs?service=fallback", content=json.dumps({"logs": [{"level": "INFO", "message": "m"}]})
    )
    assert response.status_code == 200, response.text
    assert stored(db)[0]["service"] == "fallback"


@pytest.mark.parametrize(
    ("body", "content_type", "query", "status", "text"),
    [
        (b'{"message": "a"}\n{not json}\n', "application/x-ndjson", "?service=s", 400, "NDJSON line 2"),
        (b'[{"message": "a"}, 5]', "application/json", "?service=s", 422, "logs.1"),
        (b'[{"message": "a"}]', "application/json", "?servce=s", 400, "unknown query parameter"),
        # A default no log could take is the URL's mistake, even where every entry brings its own value.
        (
            b'[{"message": "a", "service_version": "1"}]',
            "application/json",
            "?service=s&service_version=" + "x" * 51,
            422,
            "query.service_version",
        ),
        (b'[{"message": "a", "service": "own"}]', "application/json", "?service=", 422, "query.service"),
        (b'[{"message": "a"}]', "application/json", "?service=s&level=LOUD", 422, "query.level"),
        (b'[{"message": "a"}]', "text/csv", "?service=s", 415, "x-ndjson"),
    ],
)
def test_bad_shipper_bodies_are_named(
    client: TestClient, db: DB, body: bytes, content_type: str, query: str, status: int, text: str
) -> None:
    response = client.post("/logs" + query, content=body, headers={"Content-Type": content_type})
    assert response.status_code == status and text in response.text
    assert db.count() == 0
