"""Bulk document ids against a real PostgreSQL: claimed in the COPY's transaction, so an id is stored once
whatever runs concurrently; a claim waits for a transaction holding the same id, and wins if it rolls back."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from app.database import Database
from app.intake import documents
from app.intake.documents import Documents
from app.intake.rows import parse_values
from app.intake.writer import Batch, commit
from tests.support import DB, log_entry, make_settings, run


def ids(*pairs: tuple[str, str] | None) -> Documents:
    return Documents(list(pairs), lambda refused: repr(sorted(refused)).encode())


async def _waits_for_the_holder(url: str, holder_commits: bool) -> frozenset[int]:
    first, second = await asyncpg.connect(url), await asyncpg.connect(url)
    try:
        await first.execute("BEGIN")
        assert await documents.claim(first, [ids(("i", "x"))], 60) == [frozenset()]
        await second.execute("BEGIN")
        waiting = asyncio.create_task(documents.claim(second, [ids(("i", "y"), ("i", "x"))], 60))
        # Bounded: until PostgreSQL shows the second claim waiting on the first one's row lock.
        for _ in range(500):
            await asyncio.sleep(0.01)
            if await first.fetchval(_WAITING, second.get_server_pid()):
                break
        else:
            raise AssertionError("the second claim never waited for the first")
        assert not waiting.done()
        await first.execute("COMMIT" if holder_commits else "ROLLBACK")
        (refused,) = await waiting
        await second.execute("COMMIT")
        return refused
    finally:
        await first.close()
        await second.close()


_WAITING = "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1"


@pytest.mark.parametrize(("holder_commits", "refused"), [(True, {1}), (False, set())])
def test_a_claim_waits_for_the_transaction_holding_its_id(
    db: DB, database_url: str, holder_commits: bool, refused: set[int]
) -> None:
    assert run(_waits_for_the_holder(database_url, holder_commits)) == frozenset(refused)
    assert {r["id"] for r in db.fetch("SELECT id FROM bulk_ids")} == {"x", "y"}


async def _claim_alone(url: str, *batches: Documents, ttl: float = 60) -> list[frozenset[int]]:
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            return await documents.claim(conn, list(batches), ttl)
    finally:
        await conn.close()


async def _prune(url: str, ttl: float) -> int:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
    try:
        return await documents.prune(pool, ttl)
    finally:
        await pool.close()


def test_duplicates_in_one_transaction_the_ttl_and_the_prune(db: DB, database_url: str) -> None:
    first = run(_claim_alone(database_url, ids(("i", "a"), None, ("i", "a")), ids(("i", "a"), ("j", "a"))))
    assert first == [frozenset({2}), frozenset({0})]  # the first holder wins, across the batches of a group
    db.fetch("UPDATE bulk_ids SET created_at = now() - interval '2 hours' WHERE index_name = 'j'")
    # An id older than the TTL is free again; a younger one is not.
    assert run(_claim_alone(database_url, ids(("i", "a"), ("j", "a")), ttl=3600)) == [frozenset({0})]
    db.fetch("UPDATE bulk_ids SET created_at = now() - interval '2 hours' WHERE index_name = 'i'")
    assert run(_prune(database_url, 3600)) == 1
    assert [(r["index_name"], r["id"]) for r in db.fetch("SELECT * FROM bulk_ids")] == [("j", "a")]


def test_a_group_commit_writes_each_id_once(db: DB, database_url: str) -> None:
    entries = [log_entry(message=f"m{i}") for i in range(3)]
    rows, _ = parse_values(entries, 10)
    batches = [
        Batch(rows, b"", documents=ids(("i", "1"), ("i", "2"), None)),
        Batch(rows, b"", documents=ids(("i", "2"), ("i", "3"), None)),
    ]

    async def write() -> list[Any]:
        database = Database(make_settings(database_url), allow_embedded=False)
        try:
            return await commit(database, batches)
        finally:
            await database.close()

    outcomes = run(write())
    assert [outcome.response for outcome in outcomes] == [b"[]", b"[0]"]
    assert db.count() == 5
