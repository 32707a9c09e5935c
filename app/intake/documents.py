"""Document ids: a bulk document with an `_id` (the Elasticsearch bulk API, app/routes/bulk.py) is stored once.

A request's documents claim their (index, `_id`) pairs in the same transaction that COPYs their rows
(app/intake/writer.py), as an Idempotency-Key claims its batch (app/intake/idempotency.py), so a row exists
exactly when its id was claimed. The claim is one INSERT … ON CONFLICT over the sorted pairs:

* a new pair (or one older than IDEMPOTENCY_TTL) wins: its row is written;
* a pair held by a transaction still in flight elsewhere makes the INSERT wait for it: if that commits, the
  claim loses, if it rolls back, the claim wins;
* a committed pair loses: that document is answered 409 and not written.

Within one transaction (one request, or the requests of one group) the first document with a pair claims
it and later ones lose without asking PostgreSQL (ON CONFLICT cannot touch one row twice in a statement).
Sorted pairs: two transactions claiming overlapping pairs take their row locks in the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import asyncpg

from app.intake import idempotency

DocumentId = tuple[str, str]  # (index, _id)


@dataclass(frozen=True)
class Documents:
    """A batch's document ids, one per row (None: no id, always written), and how to answer once the
    claim is known: `answer(refused)` is the response given the row positions refused as duplicates."""

    ids: Sequence[DocumentId | None]
    answer: Callable[[frozenset[int]], bytes]


CLAIM = """
INSERT INTO bulk_ids AS b (index_name, id)
SELECT * FROM unnest($1::text[], $2::text[])
ON CONFLICT (index_name, id) DO UPDATE SET created_at = now()
    WHERE b.created_at < now() - make_interval(secs => $3)
RETURNING index_name, id
"""
# Pruned a slice at a time so that no delete holds locks on many rows at once.
_PRUNE = """
DELETE FROM bulk_ids WHERE (index_name, id) IN (
    SELECT index_name, id FROM bulk_ids WHERE created_at < now() - make_interval(secs => $1) LIMIT 5000
)
"""


async def claim(conn: asyncpg.Connection, batches: Sequence[Documents], ttl: float) -> list[frozenset[int]]:
    """For each batch, the row positions whose id is taken (committed, or earlier in this transaction)."""
    refused: list[set[int]] = [set() for _ in batches]
    first: list[tuple[int, int, DocumentId]] = []
    seen: set[DocumentId] = set()
    for number, documents in enumerate(batches):
        for position, pair in enumerate(documents.ids):
            if pair is None:
                continue
            if pair in seen:
                refused[number].add(position)
            else:
                seen.add(pair)
                first.append((number, position, pair))
    if first:
        pairs = sorted(seen)
        records = await conn.fetch(CLAIM, [p[0] for p in pairs], [p[1] for p in pairs], ttl)
        won = {(record["index_name"], record["id"]) for record in records}
        for number, position, pair in first:
            if pair not in won:
                refused[number].add(position)
    return [frozenset(positions) for positions in refused]


async def prune(pool: asyncpg.Pool, ttl: float) -> int:
    """Forget ids older than `ttl` seconds; return how many."""
    return await idempotency.delete_in_batches(pool, _PRUNE, ttl)
