"""Idempotency-Key against a real PostgreSQL: a retried batch is stored once, in every writer mode."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.config import IngestMode
from app.database import Database
from app.errors import BadRequest, IdempotencyKeyReused
from app.intake import idempotency
from app.intake.rows import parse
from app.intake.writer import Batch, Outcome, create
from app.main import create_app
from tests.support import DB, log_entry, make_settings


def body(n: int, **fields: Any) -> bytes:
    return json.dumps({"logs": [log_entry(message=f"m{i}", **fields) for i in range(n)]}).encode()


def post(client: TestClient, raw: bytes, key: str | None, query: str = "") -> Any:
    headers = {"Content-Type": "application/json", **({"Idempotency-Key": key} if key else {})}
    return client.post("/logs" + query, content=raw, headers=headers)


@pytest.fixture(params=list(IngestMode))
def keyed_client(request: pytest.FixtureRequest, db: DB, database_url: str) -> Any:
    app = create_app(make_settings(database_url), ingest_mode=request.param)
    with TestClient(app) as client:
        yield client


def test_a_repeat_is_replayed_and_stores_nothing(keyed_client: TestClient, db: DB) -> None:
    first = post(keyed_client, body(3), "order-1042")
    assert first.status_code == 200 and "idempotent-replayed" not in first.headers
    again = post(keyed_client, body(3), "order-1042")
    assert again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content == b'{"saved":3,"status":"success"}'
    assert db.count() == 3
    (row,) = db.fetch("SELECT key, created_at FROM idempotency_keys")
    assert row["key"] == "order-1042"


def test_the_same_key_with_another_body_is_a_422(keyed_client: TestClient, db: DB) -> None:
    assert post(keyed_client, body(3), "k").status_code == 200
    reused = post(keyed_client, body(4), "k")
    assert reused.status_code == 422
    assert reused.json()["error"] == "idempotency_key_reused"
    # The same body in partial mode is another request too.
    assert post(keyed_client, body(3), "k", "?partial=true").json()["error"] == "idempotency_key_reused"
    assert db.count() == 3


def test_keys_are_independent_and_a_request_without_one_is_always_stored(
    keyed_client: TestClient, db: DB
) -> None:
    for key in ("a", "b", None, None):
        assert post(keyed_client, body(2), key).status_code == 200
    assert db.count() == 8


def test_a_refused_batch_does_not_use_up_its_key(keyed_client: TestClient, db: DB) -> None:
    assert post(keyed_client, body(1, level="LOUD"), "retry-me").status_code == 422
    assert post(keyed_client, body(1), "retry-me").status_code == 200
    assert db.count() == 1


def test_an_expired_key_stores_again(keyed_client: TestClient, db: DB) -> None:
    assert post(keyed_client, body(2), "old").status_code == 200
    db.fetch("UPDATE idempotency_keys SET created_at = now() - interval '2 days'")
    again = post(keyed_client, body(2), "old")
    assert again.status_code == 200 and "idempotent-replayed" not in again.headers
    assert db.count() == 4


def test_prune_forgets_only_expired_keys(keyed_client: TestClient, db: DB, database_url: str) -> None:
    for key in ("old-1", "old-2", "new"):
        assert post(keyed_client, body(1), key).status_code == 200
    db.fetch("UPDATE idempotency_keys SET created_at = now() - interval '2 days' WHERE key LIKE 'old-%'")

    async def prune() -> int:
        database = Database(make_settings(database_url))
        try:
            return await idempotency.prune(await database.pool(), 86_400)
        finally:
            await database.close()

    assert asyncio.run(prune()) == 2
    assert [r["key"] for r in db.fetch("SELECT key FROM idempotency_keys")] == ["new"]


@pytest.mark.parametrize("key", ["", "x" * 256, "naïve", "tab\there"])
def test_a_malformed_key_is_a_400(key: str) -> None:
    with pytest.raises(BadRequest, match="Idempotency-Key"):
        idempotency.key_from(key)


def test_a_malformed_key_is_refused_over_http(keyed_client: TestClient, db: DB) -> None:
    response = post(keyed_client, body(1), "x" * 256)
    assert response.status_code == 400 and "Idempotency-Key" in response.json()["message"]
    assert db.count() == 0


@pytest.mark.parametrize("mode", list(IngestMode))
def test_concurrent_repeats_store_once(db: DB, database_url: str, mode: IngestMode) -> None:
    """Ten copies of one keyed request at once through one app: one is stored, nine are replays."""

    async def run() -> list[Any]:
        app = create_app(make_settings(database_url), ingest_mode=mode)
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://t") as c,
        ):
            return await asyncio.gather(
                *(c.post("/logs", content=body(5), headers={"Idempotency-Key": "burst"}) for _ in range(10))
            )

    responses = asyncio.run(run())
    assert [r.status_code for r in responses] == [200] * 10
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 9
    assert db.count() == 5


def test_two_servers_claiming_one_key_at_once_store_it_once(db: DB, database_url: str) -> None:
    """Two writers with pools of their own (two servers): PostgreSQL's unique key decides."""
    raw = body(4)
    claim = idempotency.Claim("shared", idempotency.fingerprint("/logs", raw))
    other = idempotency.Claim("shared", idempotency.fingerprint("/logs", body(5)))

    async def run() -> list[Any]:
        settings = make_settings(database_url)
        databases = [Database(settings) for _ in range(4)]
        writers = [create(settings, database, IngestMode.direct) for database in databases]
        try:
            batches = [Batch(parse(raw, 1000), b"first", claim)] * 3 + [
                Batch(parse(body(5), 1000), b"x", other)
            ]
            return await asyncio.gather(
                *(writer.write(b) for writer, b in zip(writers, batches, strict=True)), return_exceptions=True
            )
        finally:
            for database in databases:
                await database.close()

    results = asyncio.run(run())
    stored = [r for r in results if r == Outcome(b"first")]
    replays = [r for r in results if r == Outcome(b"first", replayed=True)]
    reused = [r for r in results if isinstance(r, IdempotencyKeyReused)]
    if len(stored) == 1:  # one of the three same-body requests won
        assert len(replays) == 2 and len(reused) == 1
        assert db.count() == 4
    else:  # the other body won: the three are reuses of its key
        assert results[3] == Outcome(b"x") and len(reused) == 3
        assert db.count() == 5


def test_a_group_with_one_replay_stores_the_others(db: DB, database_url: str) -> None:
    settings = make_settings(database_url, writer_concurrency=1)
    raw = body(2)
    claim = idempotency.Claim("seen", idempotency.fingerprint("/logs", raw))

    async def run() -> list[Any]:
        database = Database(settings)
        writer = create(settings, database, IngestMode.group)
        try:
            await writer.write(Batch(parse(raw, 1000), b"first", claim))
            # Queued together, so they share one transaction: one replay, two new batches.
            return await asyncio.gather(
                writer.write(Batch(parse(body(3), 1000), b"a")),
                writer.write(Batch(parse(raw, 1000), b"again", claim)),
                writer.write(Batch(parse(body(4), 1000), b"b", idempotency.Claim("fresh", b"f"))),
            )
        finally:
            await writer.close()
            await database.close()

    assert asyncio.run(run()) == [Outcome(b"a"), Outcome(b"first", replayed=True), Outcome(b"b")]
    assert db.count() == 2 + 3 + 4
