-- Elasticsearch bulk document ids (app/intake/documents.py): an `_id` is claimed in the same transaction that
-- COPYs its document, so a row exists exactly when its id was claimed and a retried `create` with the same
-- id is refused (409) instead of stored twice. Ids are per index, as in Elasticsearch. Ids older than
-- IDEMPOTENCY_TTL are pruned by the housekeeping; the index serves that prune.

CREATE TABLE bulk_ids (
    index_name  TEXT NOT NULL,
    id          TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (index_name, id)
);

CREATE INDEX bulk_ids_created_at ON bulk_ids (created_at);
