-- What a log pushed through Loki's push API (app/routes/loki.py) needs to read back through the Loki query API
-- as Loki returns it (app/logql/labels.py): the stream labels it was pushed with (service_name added when none
-- was, as Loki 3 derives it), its structured metadata, and its line when that is not the stored message (a
-- JSON line, whose message field is the message). NULL for every other log, so other front doors write and
-- store nothing more; nullable columns without a default are added without rewriting the table.
ALTER TABLE logs ADD COLUMN loki_labels JSONB;
ALTER TABLE logs ADD COLUMN loki_metadata JSONB;
ALTER TABLE logs ADD COLUMN loki_line TEXT;
