-- LogQL's rollup (app/storage/summary.py, app/logql/rollup.py): rows and message bytes per minute, service,
-- level and environment (soft-deleted rows excluded), so that a count, rate or bytes query over stream labels
-- reads minutes instead of rows. `minute` is the END of the minute it counts: a row at t is in the minute
-- (m − 1 min, m], as LogQL's windows (t − range, t] are left-open and right-closed; `edge` marks the rows
-- exactly at m (a row at midnight is in its day's partition but in the minute that ends the day before, so
-- dropping a day deletes (start, end) whole, the edge of `start` and all but the edge of `end`). The writer adds its
-- group's counts in the COPY's transaction, sharded like log_counts; archiving a day deletes its minutes in
-- the drop's transaction (an archived day is then answered from its files), retention with its partition.
-- `pushed` marks the rows pushed through Loki (loki_labels set): their stream labels are the pushed ones and
-- their bytes their raw line, not these columns, so the rollup declines a range that holds any.
CREATE TABLE log_minutes (
    minute      TIMESTAMPTZ NOT NULL,
    service     VARCHAR(100) NOT NULL,
    level       log_level NOT NULL,
    environment log_environment NOT NULL,
    edge        BOOLEAN NOT NULL,
    pushed      BOOLEAN NOT NULL,
    shard       SMALLINT NOT NULL,
    n           BIGINT NOT NULL,
    bytes       BIGINT NOT NULL,
    PRIMARY KEY (minute, service, level, environment, edge, pushed, shard)
);

INSERT INTO log_minutes (minute, service, level, environment, edge, pushed, shard, n, bytes)
SELECT date_trunc('minute', created_at - interval '1 microsecond', 'UTC') + interval '1 minute',
       service, level, environment, date_trunc('minute', created_at, 'UTC') = created_at,
       loki_labels IS NOT NULL, 0, count(*), sum(octet_length(message))
FROM logs WHERE NOT deleted GROUP BY 1, 2, 3, 4, 5, 6;

-- A soft delete (or undelete) moves a row out of (into) both summaries.
CREATE OR REPLACE FUNCTION log_counts_on_soft_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.deleted IS DISTINCT FROM OLD.deleted THEN
        INSERT INTO log_counts AS c (hour, service, level, shard, n)
        VALUES (date_trunc('hour', OLD.created_at, 'UTC'), OLD.service, OLD.level, 0,
                CASE WHEN NEW.deleted THEN -1 ELSE 1 END)
        ON CONFLICT (hour, service, level, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
        INSERT INTO log_minutes AS m (minute, service, level, environment, edge, pushed, shard, n, bytes)
        VALUES (date_trunc('minute', OLD.created_at - interval '1 microsecond', 'UTC') + interval '1 minute',
                OLD.service, OLD.level, OLD.environment,
                date_trunc('minute', OLD.created_at, 'UTC') = OLD.created_at, OLD.loki_labels IS NOT NULL, 0,
                CASE WHEN NEW.deleted THEN -1 ELSE 1 END,
                CASE WHEN NEW.deleted THEN -1 ELSE 1 END * octet_length(OLD.message))
        ON CONFLICT (minute, service, level, environment, edge, pushed, shard)
            DO UPDATE SET n = m.n + EXCLUDED.n, bytes = m.bytes + EXCLUDED.bytes;
    END IF;
    RETURN NULL;
END $$;
