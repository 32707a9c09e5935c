"""API keys: who may do what, through the whole middleware stack, against a real PostgreSQL."""

from __future__ import annotations

import base64
import json
import logging
import sys
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.support import DB, log_entry, make_settings
from tests.test_database import FakeSecretsManager

FULL, INGEST = "full-key-0123456789", "ingest-key-abcdef"
BODY = json.dumps({"logs": [log_entry()]}).encode()


@pytest.fixture
def client(db: DB, database_url: str) -> Iterator[TestClient]:
    settings = make_settings(database_url, api_keys=f"{FULL}, other-full", ingest_api_keys=INGEST)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("POST", "/logs", {}, 401),
        ("POST", "/logs", bearer("wrong"), 401),
        ("POST", "/logs", {"Authorization": f"Basic {FULL}"}, 401),
        ("POST", "/logs", bearer(FULL), 200),
        ("POST", "/logs", {"X-API-Key": FULL}, 200),
        ("POST", "/logs", bearer("other-full"), 200),
        ("POST", "/logs", bearer(INGEST), 200),
        ("POST", "/logs", {"X-API-Key": INGEST}, 200),
        ("GET", "/stats", {}, 401),
        ("GET", "/stats", bearer(INGEST), 403),
        ("GET", "/stats", bearer(FULL), 200),
        ("GET", "/metrics", {}, 401),
        ("GET", "/metrics", {"X-API-Key": INGEST}, 403),
        ("GET", "/metrics", {"X-API-Key": FULL}, 200),
        ("GET", "/openapi.json", {}, 401),
        ("GET", "/", {}, 200),
        ("GET", "/health/ready", {}, 200),
        # Grafana's Loki data source: Basic auth with the key as password; an ingest key may push, not read.
        (
            "GET",
            "/loki/api/v1/labels",
            {"Authorization": "Basic " + base64.b64encode(b"grafana:" + FULL.encode()).decode()},
            200,
        ),
        ("GET", "/loki/api/v1/labels", bearer(INGEST), 403),
        ("POST", "/loki/api/v1/query_range", bearer(INGEST), 403),
        ("POST", "/loki/api/v1/query", bearer(INGEST), 403),
    ],
)
def test_who_may_do_what(
    client: TestClient, method: str, path: str, headers: dict[str, str], status: int
) -> None:
    response = client.request(method, path, content=BODY if method == "POST" else None, headers=headers)
    assert response.status_code == status, response.text
    if status == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert response.json()["error"] == "unauthorized"
    if status == 403:
        assert response.json()["error"] == "forbidden"


def test_refused_writes_store_nothing(client: TestClient, db: DB) -> None:
    assert client.post("/logs", content=BODY, headers=bearer("nope")).status_code == 401
    assert db.count() == 0


def test_a_key_never_appears_in_answers_or_logs(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        answers = [
            client.post("/logs", content=BODY, headers=bearer("guess-" + FULL)),
            client.get("/stats", headers=bearer(INGEST)),
            client.post("/logs", content=b"{", headers=bearer(FULL)),
        ]
        metrics = client.get("/metrics", headers=bearer(FULL)).text
    for text in (
        [a.text for a in answers] + [r.getMessage() + str(r.__dict__) for r in caplog.records] + [metrics]
    ):
        assert FULL not in text and INGEST not in text


def test_cors_preflight_needs_no_key(db: DB, database_url: str) -> None:
    settings = make_settings(database_url, api_keys=FULL, cors_origins="https://app.example")
    with TestClient(create_app(settings)) as client:
        preflight = client.options(
            "/logs",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type,idempotency-key",
            },
        )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"


def test_without_keys_configured_everything_is_open(db: DB, database_url: str) -> None:
    with TestClient(create_app(make_settings(database_url))) as client:
        assert client.post("/logs", content=BODY).status_code == 200
        assert client.get("/stats").status_code == 200


def test_keys_from_a_secrets_manager_secret(
    monkeypatch: pytest.MonkeyPatch, db: DB, database_url: str
) -> None:
    fake = FakeSecretsManager({"API_KEYS": "from-secret", "INGEST_API_KEYS": "ingest-from-secret"})
    monkeypatch.setitem(sys.modules, "boto3", SimpleNamespace(client=lambda service: fake))
    settings = make_settings(database_url, api_keys="from-env", api_keys_secret_arn="arn:keys")
    with TestClient(create_app(settings)) as client:
        assert client.get("/stats", headers=bearer("from-secret")).status_code == 200
        assert client.get("/stats", headers=bearer("from-env")).status_code == 200
        assert client.get("/stats", headers=bearer("ingest-from-secret")).status_code == 403
        assert client.get("/stats", headers=bearer("nope")).status_code == 401
    assert fake.asked == ["arn:keys"]
