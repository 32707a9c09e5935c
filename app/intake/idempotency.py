"""Idempotency keys: a retried batch is stored once.

A request with `Idempotency-Key: K` claims K in the same transaction that COPYs its rows (app/intake/writer.py),
so a committed batch and its key exist together or not at all. The claim is one INSERT … ON CONFLICT:

* K is new (or older than IDEMPOTENCY_TTL): the claim wins and the rows are written.
* K is held by a transaction still in flight elsewhere (another worker or server): PostgreSQL makes the
  INSERT wait for it; if it commits, the claim loses, if it rolls back, the claim wins.
* K was committed: the claim loses; the stored fingerprint decides between a replay of the stored answer
  (same body) and 422 `idempotency_key_reused` (another body). Nothing is stored either way.

Within one process, `InFlight` makes a second request with the same key wait for the first before it
queues, so two claims of one key never meet inside one group transaction.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from app.errors import BadRequest, IdempotencyKeyReused

log = logging.getLogger(__name__)

HEADER = "idempotency-key"
MAX_LENGTH = 255


@dataclass(frozen=True)
class Claim:
    key: str
    fingerprint: bytes


def key_from(header: str | None) -> str | None:
    """The request's key, or None; 400 for one that is not 1–255 printable ASCII characters."""
    if header is None:
        return None
    if not 0 < len(header) <= MAX_LENGTH or not all(" " <= c <= "~" for c in header):
        raise BadRequest(f"Idempotency-Key must be 1 to {MAX_LENGTH} printable ASCII characters")
    return header


def claim(key: str | None, route: str, body: bytes, options: str = "") -> Claim | None:
    """The claim a request with `key` makes on its batch; None without a key (then nothing is hashed)."""
    return None if key is None else Claim(key, fingerprint(route, body, options))


def fingerprint(route: str, body: bytes, options: str = "") -> bytes:
    """What "the same request" means: the route, its options and the decoded body, hashed."""
    digest = hashlib.sha256(route.encode())
    digest.update(b"\0" + options.encode() + b"\0")
    digest.update(body)
    return digest.digest()


# Sorted keys: two group transactions claiming overlapping keys take their row locks in the same order.
CLAIM = """
INSERT INTO idempotency_keys AS k (key, fingerprint, response)
SELECT * FROM unnest($1::text[], $2::bytea[], $3::bytea[])
ON CONFLICT (key) DO UPDATE
    SET fingerprint = EXCLUDED.fingerprint, response = EXCLUDED.response, created_at = now()
    WHERE k.created_at < now() - make_interval(secs => $4)
RETURNING key
"""
LOOKUP = "SELECT key, fingerprint, response FROM idempotency_keys WHERE key = any($1::text[])"
# Pruned a slice at a time so that no delete holds locks on many rows at once.
_PRUNE = """
DELETE FROM idempotency_keys WHERE key IN (
    SELECT key FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1) LIMIT 5000
)
"""


def replay(claim: Claim, stored: asyncpg.Record | None) -> bytes:
    """The stored answer for a lost claim, or 422 when the key was used for another body."""
    if stored is None:
        # Pruned between the claim and the look-up: only possible for a key at the very end of its TTL.
        raise IdempotencyKeyReused(f"Idempotency-Key {claim.key!r} expired while this request was written")
    if bytes(stored["fingerprint"]) != claim.fingerprint:
        raise IdempotencyKeyReused(
            f"Idempotency-Key {claim.key!r} was already used for a different request body"
        )
    return bytes(stored["response"])


async def prune(pool: asyncpg.Pool, ttl: float) -> int:
    """Delete keys older than `ttl` seconds; return how many."""
    return await delete_in_batches(pool, _PRUNE, ttl)


async def delete_in_batches(pool: asyncpg.Pool, sql: str, ttl: float) -> int:
    """Run a DELETE of at most 5000 rows (`sql`, taking `ttl` as $1) until it deletes fewer; return how many.
    Short statements keep each lock and WAL burst small beside ingest."""
    total = 0
    while True:
        status = await pool.execute(sql, ttl)
        deleted = int(status.split()[-1])
        total += deleted
        if deleted < 5000:
            return total


class InFlight:
    """Per process: one request at a time per key; the next one waits for the first to finish."""

    def __init__(self) -> None:
        self._keys: dict[str, asyncio.Event] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        while (running := self._keys.get(key)) is not None:
            await running.wait()
        done = self._keys[key] = asyncio.Event()
        try:
            yield
        finally:
            del self._keys[key]
            done.set()
