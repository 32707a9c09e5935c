-- logs becomes a table range-partitioned by created_at, one partition per UTC day (app/partitions.py makes
-- them, ahead of time and on demand; app/retention.py drops whole old ones). Every existing row is kept.
--
-- Why this shape:
--   * The primary key must include the partition key: (created_at, id). It also gives newest-first
--     keyset pages (GET /logs) as ordered index scans. id still comes from the same sequence.
--   * BRIN on created_at stays: a few pages per partition, and nearly free to maintain on ingest.
--   * No DEFAULT partition: attaching a new partition would scan it, and it forbids DETACH CONCURRENTLY.
--     Rows only ever go where a partition exists: app/rows.py keeps created_at within a window around the
--     time received (the original is kept in metadata), and the writer creates the window's partitions.
--   * trace_id btree: trace lookups (GET /traces/{id}) in milliseconds instead of a scan; measured ingest
--     cost in results/REPORT.md ("schema choices"), the one extra index we keep by default.
--   * log_counts: /stats's summary, written by the writer in the same transaction as each COPY (app/summary.py).

ALTER TABLE logs RENAME TO logs_unpartitioned;
ALTER INDEX logs_pkey RENAME TO logs_unpartitioned_pkey;
ALTER INDEX logs_created_at_brin RENAME TO logs_unpartitioned_created_at_brin;

CREATE TABLE logs (
    id              BIGINT NOT NULL DEFAULT nextval('logs_id_seq'),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    level           log_level NOT NULL DEFAULT 'INFO',
    log_type        log_type NOT NULL,
    service         VARCHAR(100) NOT NULL,
    environment     log_environment NOT NULL DEFAULT 'development',
    service_version VARCHAR(50) NOT NULL DEFAULT 'v0.0.0-dev',
    trace_id        VARCHAR(32),
    user_id         VARCHAR(255),
    session_id      VARCHAR(100),
    error_type      VARCHAR(200),
    message         TEXT NOT NULL,
    stack_trace     TEXT,
    path            VARCHAR(500),
    method          http_method,
    action_type     VARCHAR(50),
    function_name   VARCHAR(300),
    file_path       VARCHAR(1000),
    duration_ms     DECIMAL(10, 3),
    deleted         BOOLEAN NOT NULL DEFAULT FALSE,
    metadata        JSONB,
    PRIMARY KEY (created_at, id)
) PARTITION BY RANGE (created_at);

ALTER SEQUENCE logs_id_seq OWNED BY logs.id;
CREATE INDEX logs_created_at_brin ON logs USING brin (created_at);
CREATE INDEX logs_trace_id ON logs (trace_id) WHERE trace_id IS NOT NULL;

-- One partition for each UTC day the old table has rows on, then the rows, in one statement.
DO $$
DECLARE
    day date;
BEGIN
    FOR day IN SELECT DISTINCT (created_at AT TIME ZONE 'UTC')::date FROM logs_unpartitioned LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF logs FOR VALUES FROM (%L) TO (%L)',
            'logs_p' || to_char(day, 'YYYYMMDD'),
            (day::timestamp AT TIME ZONE 'UTC'), ((day + 1)::timestamp AT TIME ZONE 'UTC')
        );
    END LOOP;
END $$;

INSERT INTO logs SELECT id, created_at, level, log_type, service, environment, service_version, trace_id,
    user_id, session_id, error_type, message, stack_trace, path, method, action_type, function_name,
    file_path, duration_ms, deleted, metadata FROM logs_unpartitioned;
DROP TABLE logs_unpartitioned;

-- /stats's summary: rows per UTC hour, service and level (soft-deleted rows excluded). The writer adds its
-- group's counts in the COPY's transaction; `shard` spreads concurrent writers over different rows so they
-- do not wait on each other's row locks until commit. app/summary.py compacts shards and old hours.
CREATE TABLE log_counts (
    hour    TIMESTAMPTZ NOT NULL,
    service VARCHAR(100) NOT NULL,
    level   log_level NOT NULL,
    shard   SMALLINT NOT NULL,
    n       BIGINT NOT NULL,
    PRIMARY KEY (hour, service, level, shard)
);

INSERT INTO log_counts (hour, service, level, shard, n)
SELECT date_trunc('hour', created_at, 'UTC'), service, level, 0, count(*)
FROM logs WHERE NOT deleted GROUP BY 1, 2, 3;

-- A soft delete (or undelete) moves a row out of (into) the counts. Row triggers on UPDATE do not fire on
-- COPY, so ingest pays nothing for this.
CREATE FUNCTION log_counts_on_soft_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.deleted IS DISTINCT FROM OLD.deleted THEN
        INSERT INTO log_counts AS c (hour, service, level, shard, n)
        VALUES (date_trunc('hour', OLD.created_at, 'UTC'), OLD.service, OLD.level, 0,
                CASE WHEN NEW.deleted THEN -1 ELSE 1 END)
        ON CONFLICT (hour, service, level, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER logs_soft_delete_counts AFTER UPDATE OF deleted ON logs
    FOR EACH ROW EXECUTE FUNCTION log_counts_on_soft_delete();
