-- Idempotency keys (app/idempotency.py): claimed in the same transaction as the batch's rows, so a key
-- exists exactly when its batch was committed. `response` is the answer replayed to a retry; `fingerprint`
-- (sha256 of route, options and decoded body) tells a retry from a reuse of the key for another body.
-- Keys older than IDEMPOTENCY_TTL are pruned in the background; the index serves that prune.

CREATE TABLE idempotency_keys (
    key         TEXT PRIMARY KEY,
    fingerprint BYTEA NOT NULL,
    response    BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
