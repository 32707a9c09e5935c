-- Cold storage: a part is written as several files of at most FILE_ROWS rows each (app/storage/archive.py),
-- because every reader parses a file's footer whole and a footer grows with its row groups. `path` names the
-- part's first file; the others are its siblings `part-NNNN.K.parquet`, K = 1 … files − 1. Parts archived
-- before this are one file each.
ALTER TABLE archive_parts ADD COLUMN files INT NOT NULL DEFAULT 1;
