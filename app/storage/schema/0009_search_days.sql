-- A summary filter per rebuilt day (app/search/build.py): every entry of the blocks the rebuild wrote, which
-- say so (`summarized`). A lookup tests a day's summary first and skips all its summarized blocks when the
-- summary lacks an entry; blocks written later (late rows) are not summarized and are always tested.
-- Deleted with the day's blocks (retention, the archive) and by the next rebuild of the day.
CREATE TABLE search_days (
    day     DATE PRIMARY KEY,
    bloom   BYTEA NOT NULL
);
ALTER TABLE search_days ALTER COLUMN bloom SET STORAGE EXTERNAL;
ALTER TABLE search_blocks ADD COLUMN summarized BOOLEAN NOT NULL DEFAULT false;
