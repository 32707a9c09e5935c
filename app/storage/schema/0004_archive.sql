-- Cold storage (app/storage/archive.py): which parts of which days live as Parquet files under ARCHIVE_URL.
--
-- A day is normally one part; rows that arrive later for a day already archived (created_at may lie up to
-- CREATED_AT_MAX_AGE_DAYS in the past) land in a new partition of that day and become the next part.
-- A part moves through three states, each committed before the next step starts, so a crash at any point
-- is recognised and finished or undone by the next pass:
--   writing   the file may exist, whole or not: the next pass deletes it and starts the part again;
--   verified  the file was read back and matches the partition (rows, ids): the next pass drops the
--             partition (after checking it still holds exactly those rows);
--   archived  the partition was dropped in the same transaction that set this state: readers take the part
--             from the file. Reads use only 'archived' parts, so a day is never read both hot and archived.
-- id_sum and id_square_sum (with rows) fingerprint the set of ids the file holds.
CREATE TABLE archive_parts (
    day           DATE NOT NULL,
    part          INT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('writing', 'verified', 'archived')),
    path          TEXT NOT NULL,
    rows          BIGINT,
    bytes         BIGINT,
    row_groups    INT,
    id_sum        NUMERIC,
    id_square_sum NUMERIC,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (day, part)
);
