-- The search index (app/search/): per block of rows (a COPY group's rows of one hour, or a backfill's slice of a
-- day), the time range they lie in and a bloom filter of their words. The writer inserts a group's blocks in
-- the transaction of its COPY, so every committed row is covered the moment it is visible, late rows and
-- redelivered bulks included; retention and the archive delete a day's blocks in the transaction that drops
-- its partition. The filter is stored uncompressed (random bits do not compress), so a lookup reads only
-- the TOAST chunk holding the word it tests.
CREATE TABLE search_blocks (
    day     DATE NOT NULL,
    min_at  TIMESTAMPTZ NOT NULL,
    max_at  TIMESTAMPTZ NOT NULL,
    rows    INT NOT NULL,
    bloom   BYTEA NOT NULL
);
ALTER TABLE search_blocks ALTER COLUMN bloom SET STORAGE EXTERNAL;
CREATE INDEX search_blocks_day ON search_blocks (day);

-- A transaction that wrote logs without indexing them (SEARCH_INDEX=off, psql, a restore, a bulk load) leaves
-- its id here: one statement-level trigger call per INSERT/COPY statement, nothing per row. The writer
-- removes its own transaction's row in the statement that inserts its blocks. While any row is here, readers
-- do not use the index (they scan, exactly as before); the housekeeping's backfill re-indexes the days whose
-- rows and blocks disagree and then removes the rows it saw (app/search/build.py).
CREATE TABLE search_dirty (
    xid XID8 PRIMARY KEY,
    at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE FUNCTION search_dirty_on_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO search_dirty (xid) VALUES (pg_current_xact_id()) ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;

CREATE TRIGGER logs_search_dirty AFTER INSERT OR UPDATE OF message, metadata, created_at ON logs
    FOR EACH STATEMENT EXECUTE FUNCTION search_dirty_on_write();

-- Rows stored before the index existed: not indexed until the first backfill.
INSERT INTO search_dirty (xid) SELECT pg_current_xact_id() WHERE EXISTS (SELECT FROM logs);
