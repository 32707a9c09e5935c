"""POST/GET/DELETE /alerts: a rule in, the same rule out with its state; 422s naming the field; key scopes."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.support import DB, log_entry, make_settings


def rule(**fields: Any) -> dict[str, Any]:
    return {
        "name": "checkout errors",
        "query": {"service": "checkout", "level": ["ERROR", "FATAL"], "meta.region": "eu-west-1"},
        "threshold": 5,
        "window_seconds": 300,
        "notify": ["https://hooks.example.com/alert", "slack://T1/B1/C1"],
        **fields,
    }


def test_a_rule_is_created_listed_read_and_deleted(client: TestClient, db: DB) -> None:
    created = client.post("/alerts", json=rule())
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["name"] == "checkout errors" and body["threshold"] == 5 and body["renotify_seconds"] == 3600
    assert body["query"] == rule()["query"]
    assert body["state"] == "ok" and body["last_count"] is None and body["last_notified_at"] is None
    path, _, link = body["logs_url"].partition("?")
    filters = parse_qs(link)
    assert path == "/ui" and filters.pop("since")
    assert filters == {"service": ["checkout"], "level": ["ERROR", "FATAL"], "meta.region": ["eu-west-1"]}
    listed = client.get("/alerts").json()["alerts"]
    assert [r["id"] for r in listed] == [body["id"]]
    one = client.get(f"/alerts/{body['id']}").json()
    assert {**one, "logs_url": None} == {**body, "logs_url": None}
    assert db.fetch("SELECT name FROM alert_rules")[0]["name"] == "checkout errors"
    assert client.delete(f"/alerts/{body['id']}").status_code == 204
    assert client.get(f"/alerts/{body['id']}").status_code == 404
    assert client.delete(f"/alerts/{body['id']}").json()["error"] == "not_found"
    assert client.get("/alerts").json() == {"alerts": []}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"query": {"servce": "x"}}, "query.servce"),
        ({"query": {"level": "LOUD"}}, "query.level"),
        ({"query": {"min_level": ["ERROR", "WARN"]}}, "query.min_level"),
        ({"query": {"since": "2026-01-01T00:00:00Z"}}, "query.since"),
        ({"query": {"trace_id": "x" * 33}}, "query.trace_id"),
        ({"query": {"service": 5}}, "query.service"),
        ({"query": {"meta.a": {"b": 1}}}, "query.meta.a"),
        ({"query": {"level": ""}}, "query.level"),
        ({"query": {"environment": [""]}}, "query.environment"),
        ({"query": {"min_level": ""}}, "query.min_level"),
        ({"query": {"not.service": 5}}, "query.not.service"),
        ({"query": {"not.servce": "x"}}, "query.not.servce"),
        ({"threshold": 5.5}, "body.threshold"),
        ({"notify": ["ftp://example.com/x"]}, "notify.0"),
        ({"notify": ["https://ok.example.com", "nope"]}, "notify.1"),
        ({"notify": ["http:///no-host"]}, "notify.0"),
        ({"notify": ["https://a.example.com", "https://a.example.com"]}, "notify"),
        ({"notify": []}, "body.notify"),
        ({"threshold": 0}, "body.threshold"),
        ({"threshold": "5"}, "body.threshold"),
        ({"window_seconds": 0}, "body.window_seconds"),
        ({"renotify_seconds": -1}, "body.renotify_seconds"),
        ({"name": ""}, "body.name"),
        ({"colour": "red"}, "body.colour"),
    ],
)
def test_an_invalid_rule_is_a_422_naming_the_field(
    client: TestClient, db: DB, fields: dict[str, Any], field: str
) -> None:
    response = client.post("/alerts", json=rule(**fields))
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]], response.json()
    assert db.fetch("SELECT count(*) AS n FROM alert_rules")[0]["n"] == 0


def test_what_the_document_allows_is_taken(client: TestClient, db: DB) -> None:
    # JSON's whole numbers with a fraction part, lower-case levels, scalars and lists under meta./not.meta.
    query = {"level": "error", "meta.http.status": [500, 503], "not.meta.a\\.b": True, "not.level": ["debug"]}
    response = client.post("/alerts", json=rule(threshold=5.0, window_seconds=300.0, query=query))
    assert response.status_code == 201, response.text
    assert (response.json()["threshold"], response.json()["window_seconds"]) == (5, 300)


def test_a_nul_in_a_filter_is_stored_as_logs_store_it(client: TestClient, db: DB) -> None:
    created = client.post("/alerts", json=rule(name="a\x00b", query={"q": "x\x00y"}))
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "a\ufffdb" and created.json()["query"] == {"q": "x\ufffdy"}


def test_managing_rules_needs_a_full_key(db: DB, database_url: str) -> None:
    settings = make_settings(database_url, api_keys="full-key", ingest_api_keys="ingest-key")
    with TestClient(create_app(settings)) as client:
        full, ingest = {"X-API-Key": "full-key"}, {"X-API-Key": "ingest-key"}
        assert client.post("/alerts", json=rule()).status_code == 401
        refused = client.post("/alerts", json=rule(), headers=ingest)
        assert refused.status_code == 403 and "API_KEYS" in refused.json()["message"]
        assert client.get("/alerts", headers=ingest).status_code == 403
        created = client.post("/alerts", json=rule(), headers=full)
        assert created.status_code == 201
        assert client.delete(f"/alerts/{created.json()['id']}", headers=ingest).status_code == 403
        assert client.get("/alerts", headers=full).json()["alerts"][0]["id"] == created.json()["id"]
        # The ingest key still sends logs.
        assert client.post("/logs", json={"logs": [log_entry()]}, headers=ingest).status_code == 200
