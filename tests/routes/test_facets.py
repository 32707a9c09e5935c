"""GET /logs/facets against a real PostgreSQL: each count against the same count written plainly in SQL,
over ranges that start and end inside an hour (the summary's whole hours plus the rows at the edges),
the sample when a filter leaves the summary, and nested metadata paths that work as GET /logs filters."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.routes import facets
from tests.support import DB, log_entry

NOW = datetime.now(UTC).replace(microsecond=0)
SINCE = (NOW - timedelta(hours=30, minutes=17)).isoformat()
UNTIL = (NOW - timedelta(hours=2, minutes=41)).isoformat()


@pytest.fixture
def loaded(client: TestClient, db: DB) -> TestClient:
    entries = [
        log_entry(
            service=["api", "web", "cron"][i % 3],
            level=["INFO", "WARN", "ERROR", "DEBUG"][i % 4],
            environment=["production", "staging"][i % 5 == 0],
            created_at=(NOW - timedelta(minutes=7 * i)).isoformat(),
            metadata={"region": ["eu", "us"][i % 2], "http": {"status": [200, 500][i % 7 == 0]}, "k.dot": True}
            if i % 4
            else None,
        )
        for i in range(600)  # 70 hours
    ]  # fmt: skip
    assert client.post("/logs", content=json.dumps({"logs": entries})).status_code == 200
    return client


def by(db: DB, column: str, where: str, *args: Any) -> dict[str, int]:
    rows = db.fetch(
        f"SELECT {column}::text AS v, count(*) AS n FROM logs WHERE NOT deleted AND {where} GROUP BY 1", *args
    )
    return {r["v"]: r["n"] for r in rows}


def facet(body: dict[str, Any], field: str) -> dict[str, Any]:
    (found,) = [f for f in body["facets"] if f["field"] == field]
    return found


def values(found: dict[str, Any]) -> dict[str, int]:
    return {v["value"]: v["count"] for v in found["values"]}


def test_service_and_level_are_exact_from_the_summary_and_the_edges(loaded: TestClient, db: DB) -> None:
    body = loaded.get("/logs/facets", params={"since": SINCE, "until": UNTIL}).json()
    window = "created_at >= $1 AND created_at < $2"
    args = (datetime.fromisoformat(SINCE), datetime.fromisoformat(UNTIL))
    for field in ("service", "level"):
        assert facet(body, field)["exact"] is True
        assert values(facet(body, field)) == by(db, field, window, *args)
    assert facet(body, "environment")["exact"] is False
    assert values(facet(body, "environment")) == by(db, "environment", window, *args)


@pytest.mark.parametrize(
    ("params", "where", "exact"),
    [
        ({"service": "api"}, "service = 'api'", True),
        ({"not.level": ["DEBUG", "info"], "min_level": "INFO"}, "level IN ('WARN', 'ERROR')", True),
        ({"environment": "staging"}, "environment = 'staging'", False),
        ({"meta.http.status": "500"}, "metadata @> '{\"http\": {\"status\": 500}}'", False),
        ({"not.meta.region": "eu", "service": "web"}, "metadata->>'region' IS DISTINCT FROM 'eu' AND service = 'web'", False),
    ],
)  # fmt: skip
def test_facets_count_what_get_logs_would_answer(
    loaded: TestClient, db: DB, params: dict[str, Any], where: str, exact: bool
) -> None:
    body = loaded.get("/logs/facets", params={**params, "since": SINCE, "until": UNTIL}).json()
    window = f"created_at >= $1 AND created_at < $2 AND {where}"
    args = (datetime.fromisoformat(SINCE), datetime.fromisoformat(UNTIL))
    assert by(db, "service", window, *args), "the sample must match some logs"
    for field in ("service", "level", "environment"):
        assert values(facet(body, field)) == by(db, field, window, *args), field
    assert facet(body, "service")["exact"] is exact
    assert body["sampled"] == sum(by(db, "service", window, *args).values())


def test_metadata_paths_are_filters_that_find_their_count(loaded: TestClient) -> None:
    body = loaded.get("/logs/facets", params={"since": SINCE, "until": UNTIL}).json()
    fields = [f["field"] for f in body["facets"]]
    assert {"meta.region", "meta.http.status", "meta.k\\.dot"} <= set(fields)
    for field in ("meta.region", "meta.http.status", "meta.k\\.dot"):
        for value in facet(body, field)["values"]:
            page = loaded.get(
                "/logs", params={field: value["value"], "since": SINCE, "until": UNTIL, "limit": 1000}
            )
            assert len(page.json()["logs"]) == value["count"], (field, value)
    assert values(facet(body, "meta.k\\.dot")) == {"true": facet(body, "meta.k\\.dot")["count"]}


def test_the_range_defaults_to_the_last_day(loaded: TestClient, db: DB) -> None:
    body = loaded.get("/logs/facets").json()
    until = datetime.fromisoformat(body["until"])
    assert until - datetime.fromisoformat(body["since"]) == timedelta(hours=24)
    expected = by(db, "level", "created_at >= $1 AND created_at < $2", until - timedelta(hours=24), until)
    assert values(facet(body, "level")) == expected


def test_a_sample_is_the_newest_logs(loaded: TestClient, db: DB, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(facets, "SAMPLE", 50)
    body = loaded.get("/logs/facets", params={"q": "", "since": SINCE, "until": UNTIL}).json()
    newest = db.fetch(
        "SELECT service FROM logs WHERE created_at >= $1 AND created_at < $2 ORDER BY created_at DESC, id DESC LIMIT 50",
        datetime.fromisoformat(SINCE), datetime.fromisoformat(UNTIL),
    )  # fmt: skip
    assert body["sampled"] == 50
    assert values(facet(body, "service")) == Counter(r["service"] for r in newest)


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"limit": "5"}, 422, "query.limit"),
        ({"since": "yesterday"}, 422, "query.since"),
        ({"level": "LOUD"}, 422, "query.level"),
        ({"until": "0001-01-01T00:02:13Z"}, 200, None),
        ({"since": "9999-12-31T23:59:59+00:00"}, 200, None),
        # Times whose UTC falls outside datetime's range are 422s on every route (the house rule of GET /logs).
        ({"since": "0001-01-01T00:00:00+01:00"}, 422, "query.since"),
        ({"until": "9999-12-31T23:30:00-01:00"}, 422, "query.until"),
    ],
)
def test_bad_or_extreme_ranges(
    client: TestClient, params: dict[str, str], status: int, field: str | None
) -> None:
    response = client.get("/logs/facets", params=params)
    assert response.status_code == status, response.text
    if field:
        assert [e["field"] for e in response.json()["errors"]] == [field]


def test_strings_a_filter_would_read_as_numbers_are_not_offered(client: TestClient) -> None:
    entries = [
        log_entry(metadata={"code": "500", "flag": "true", "name": "x", "big": "y" * 300}) for _ in range(3)
    ]
    assert client.post("/logs", content=json.dumps({"logs": entries})).status_code == 200
    body = client.get("/logs/facets").json()
    for field in ("meta.code", "meta.flag", "meta.big"):  # counted as paths, not offered as values
        assert facet(body, field)["count"] == 3 and facet(body, field)["values"] == []
    assert values(facet(body, "meta.name")) == {"x": 3}
