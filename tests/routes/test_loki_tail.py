"""GET /loki/api/v1/tail (WebSocket): recent matches first, then new ones as they commit, in Loki's frames;
a bad query closes the socket with Loki's message; API keys are asked for as on every read."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from app.main import create_app
from tests.support import DB, log_entry, make_settings


@pytest.fixture
def tails(db: DB, database_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(database_url, stream_max_seconds=5))) as client:
        yield client


def test_tail_sends_recent_matches_then_new_ones(tails: TestClient) -> None:
    now = time.time()
    old = [log_entry(created_at=now - 10 + i, service="api", message=f"old {i}") for i in range(3)]
    assert (
        tails.post("/logs", json={"logs": [*old, log_entry(service="web", message="other")]}).status_code
        == 200
    )
    with tails.websocket_connect('/loki/api/v1/tail?query={service_name="api"} != "1"&limit=10') as socket:
        first = json.loads(socket.receive_bytes())
        assert first["dropped_entries"] is None
        assert [v[1] for s in first["streams"] for v in s["values"]] == ["old 0", "old 2"]
        assert first["streams"][0]["stream"]["service_name"] == "api"
        new = [log_entry(service="api", message="new 2"), log_entry(service="api", message="new 1")]
        assert tails.post("/logs", json={"logs": new}).status_code == 200
        frame = json.loads(socket.receive_bytes())
        assert [v[1] for s in frame["streams"] for v in s["values"]] == ["new 2"]


def test_a_bad_query_closes_the_tail_with_lokis_message(tails: TestClient) -> None:
    with (
        pytest.raises(WebSocketDisconnect) as closed,
        tails.websocket_connect("/loki/api/v1/tail?query={a=") as socket,
    ):
        socket.receive_bytes()
    assert closed.value.code == 1008 and "parse error at line 1" in closed.value.reason


def test_the_tail_needs_a_read_key(db: DB, database_url: str) -> None:
    settings = make_settings(
        database_url, api_keys="full-key-0123456789", ingest_api_keys="ingest-key-abcdef"
    )
    with TestClient(create_app(settings)) as client:
        for headers in ({}, {"Authorization": "Bearer ingest-key-abcdef"}):
            with (
                pytest.raises(WebSocketDisconnect) as closed,
                client.websocket_connect(
                    '/loki/api/v1/tail?query={service_name="api"}', headers=headers
                ) as socket,
            ):
                socket.receive_bytes()
            assert closed.value.code == 1008
        with client.websocket_connect(
            '/loki/api/v1/tail?query={service_name="api"}',
            headers={"Authorization": "Bearer full-key-0123456789"},
        ) as socket:
            assert client.post("/logs", json={"logs": [log_entry(service="api")]},
                               headers={"Authorization": "Bearer full-key-0123456789"}).status_code == 200  # fmt: skip
            assert json.loads(socket.receive_bytes())["streams"]
