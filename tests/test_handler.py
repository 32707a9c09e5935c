"""handler.handler called with real-shaped API Gateway / Function URL / ALB events against real PostgreSQL."""

from __future__ import annotations

import base64
import gzip
import importlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support import DB

EVENTS = sorted(p.stem for p in (Path(__file__).parent / "events").glob("*.json"))


class Context:
    """The attributes of a Lambda context object that anything here reads."""

    function_name = "log-save-server"
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
    memory_limit_in_mb = 512

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 29_000


def load_handler(monkeypatch: pytest.MonkeyPatch, **env: str) -> ModuleType:
    for name in ("DATABASE_URL", "DATABASE_HOST", "DB_POOL_MIN_SIZE", "DB_POOL_MAX_SIZE", "INGEST_MODE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(Path(__file__).parent)  # no .env file here
    import handler

    return importlib.reload(handler)


@pytest.fixture
def lambda_handler(db: DB, database_url: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return load_handler(monkeypatch, DATABASE_URL=database_url)


def event(name: str) -> dict[str, Any]:
    return json.loads((Path(__file__).parent / "events" / f"{name}.json").read_text())


def test_there_is_an_event_of_each_kind_with_and_without_gzip() -> None:
    kinds = ["alb", "apigw-http-v2", "apigw-rest-v1", "function-url"]
    assert EVENTS == sorted(kinds + [f"{kind}-gzip" for kind in kinds])
    for kind in kinds:
        assert event(f"{kind}-gzip")["isBase64Encoded"] is True


@pytest.mark.parametrize("name", EVENTS)
def test_each_event_kind_stores_its_batch(lambda_handler: ModuleType, db: DB, name: str) -> None:
    response = lambda_handler.handler(event(name), Context())
    assert response["statusCode"] == 200, response
    assert json.loads(response["body"]) == {"saved": 2, "status": "success"}
    rows = db.fetch("SELECT level::text, service, error_type, metadata FROM logs ORDER BY id")
    assert [(r["level"], r["service"], r["error_type"]) for r in rows] == [
        ("INFO", "checkout", None), ("ERROR", "checkout", "CardDeclined")]  # fmt: skip
    assert json.loads(rows[0]["metadata"]) == {"order_id": 1042}


@pytest.mark.parametrize("name", ["apigw-http-v2-gzip", "apigw-rest-v1-gzip", "alb-gzip"])
def test_bad_gzip_in_a_base64_body_is_a_400(lambda_handler: ModuleType, db: DB, name: str) -> None:
    broken = event(name)
    broken["body"] = base64.b64encode(base64.b64decode(broken["body"])[:-9]).decode()
    response = lambda_handler.handler(broken, Context())
    assert response["statusCode"] == 400
    assert json.loads(response["body"])["message"] == "gzip data is truncated"
    assert db.count() == 0


def test_validation_errors_answer_422_through_lambda(lambda_handler: ModuleType, db: DB) -> None:
    bad = event("apigw-http-v2")
    bad["body"] = json.dumps({"logs": [{"level": "LOUD", "service": "a", "message": "m"}]})
    response = lambda_handler.handler(bad, Context())
    assert response["statusCode"] == 422
    assert json.loads(response["body"])["errors"][0]["field"] == "logs.0.level"


def client_backends(db: DB) -> set[int]:
    return {r["pid"] for r in db.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        " AND backend_type = 'client backend'")}  # fmt: skip


def test_warm_invocations_reuse_one_connection(lambda_handler: ModuleType, db: DB) -> None:
    # Handlers reloaded by earlier tests may still hold connections; only new ones are this handler's.
    before = client_backends(db)
    seen = []
    for name in ("apigw-http-v2", "apigw-rest-v1-gzip", "function-url"):
        assert lambda_handler.handler(event(name), Context())["statusCode"] == 200
        seen.append(client_backends(db) - before)
    assert len(seen[0]) == 1
    assert seen[0] == seen[1] == seen[2]
    assert db.count() == 6


def test_lambda_pool_defaults_are_small_unless_configured(
    monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    settings = load_handler(monkeypatch, DATABASE_URL=database_url).app.state.settings
    assert (settings.db_pool_min_size, settings.db_pool_max_size) == (0, 1)
    settings = load_handler(monkeypatch, DATABASE_URL=database_url, DB_POOL_MAX_SIZE="3").app.state.settings
    assert (settings.db_pool_min_size, settings.db_pool_max_size) == (0, 3)


def test_without_a_database_the_answer_says_what_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    lambda_handler = load_handler(monkeypatch, LOGSAVE_DATA_DIR=str(tmp_path))
    response = lambda_handler.handler(event("apigw-http-v2"), Context())
    assert response["statusCode"] == 500
    body = json.loads(response["body"])
    assert body["error"] == "database_not_configured"
    assert "DATABASE_URL" in body["message"]
    assert not list(tmp_path.iterdir()), "Lambda must never start an embedded PostgreSQL"


def test_health_route_through_lambda(lambda_handler: ModuleType) -> None:
    get = event("apigw-http-v2")
    get.update(rawPath="/", body=None, isBase64Encoded=False, routeKey="GET /")
    get["requestContext"]["http"].update(method="GET", path="/")
    response = lambda_handler.handler(get, Context())
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["status"] == "healthy"


def test_a_gzip_event_really_carries_gzip() -> None:
    raw = base64.b64decode(event("alb-gzip")["body"])
    assert json.loads(gzip.decompress(raw))["logs"][0]["service"] == "checkout"


def test_an_idempotency_key_makes_a_lambda_retry_a_replay(lambda_handler: ModuleType, db: DB) -> None:
    keyed = event("apigw-http-v2")
    keyed["headers"]["idempotency-key"] = "lambda-retry-1"
    first = lambda_handler.handler(keyed, Context())
    again = lambda_handler.handler(keyed, Context())
    assert first["statusCode"] == again["statusCode"] == 200
    assert again["headers"]["idempotent-replayed"] == "true"
    assert again["body"] == first["body"]
    assert db.count() == 2


def test_a_scheduled_event_runs_housekeeping(lambda_handler: ModuleType, db: DB) -> None:
    old = datetime.now(UTC).date() - timedelta(days=45)
    db.fetch(f"DROP TABLE IF EXISTS logs_p{old:%Y%m%d}")
    db.fetch(
        f"CREATE TABLE logs_p{old:%Y%m%d} PARTITION OF logs FOR VALUES FROM ('{old}') TO ('{old + timedelta(days=1)}')"
    )
    keyed = event("apigw-http-v2")
    keyed["headers"]["idempotency-key"] = "expired"
    assert lambda_handler.handler(keyed, Context())["statusCode"] == 200
    db.fetch("UPDATE idempotency_keys SET created_at = now() - interval '2 days'")
    scheduled = json.loads(
        (Path(__file__).parent / "events" / "schedule" / "eventbridge-scheduled.json").read_text()
    )
    done = lambda_handler.handler(scheduled, Context())
    assert done["idempotency_keys_pruned"] == 1
    assert done["partitions_dropped"] == [f"logs_p{old:%Y%m%d}"]  # RETENTION_DAYS defaults to 30
    assert db.fetch("SELECT count(*) AS n FROM idempotency_keys")[0]["n"] == 0


def test_an_event_without_content_type_is_read_as_json(lambda_handler: ModuleType, db: DB) -> None:
    # What `sam local generate-event apigateway http-api-proxy` makes: no Content-Type header at all.
    bare = event("apigw-http-v2")
    del bare["headers"]["content-type"]
    response = lambda_handler.handler(bare, Context())
    assert response["statusCode"] == 200, response
    assert db.count() == 2


def test_on_lambda_live_streams_are_off_and_say_so(lambda_handler: ModuleType) -> None:
    # API Gateway buffers whole answers: a stream would only end in a timeout, so it answers at once.
    request = event("apigw-http-v2")
    request.update(routeKey="GET /logs/stream", rawPath="/logs/stream", body="", isBase64Encoded=False)
    request["requestContext"]["http"].update(method="GET", path="/logs/stream")
    response = lambda_handler.handler(request, Context())
    assert response["statusCode"] == 501
    assert "poll GET /logs" in json.loads(response["body"])["message"]
