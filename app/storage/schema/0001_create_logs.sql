-- The logs table: the 21 columns of the product description, in its order, with its types and limits.
--
-- Indexes, chosen for ingest speed:
--   * The seed had four partial btrees (service/level/created_at, error_type, user_id, trace_id). Every
--     btree is updated for every row COPYed in, with random I/O into pages that do not stay hot; on a
--     2-vCPU box that is the largest single cost of ingest after the COPY itself (see results/REPORT.md).
--   * Logs arrive in (roughly) time order, so a BRIN index on created_at is a few pages, costs almost
--     nothing per row, and lets every time-bounded query skip the blocks outside its window.
--   * The id primary key is kept: it is the one unique handle on a row (soft delete, links).
-- A query pattern that needs a btree (say trace_id lookups) gets its own migration, measured in the lab
-- first and created CONCURRENTLY on a live system.

CREATE TYPE log_level AS ENUM ('TRACE', 'DEBUG', 'INFO', 'WARN', 'ERROR', 'FATAL');
CREATE TYPE log_type AS ENUM ('BACKEND', 'FRONTEND', 'MOBILE', 'IOT', 'WORKER');
CREATE TYPE log_environment AS ENUM ('production', 'staging', 'development', 'test', 'local');
CREATE TYPE http_method AS ENUM ('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS');

CREATE TABLE logs (
    id              BIGSERIAL PRIMARY KEY,
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
    metadata        JSONB
);

CREATE INDEX logs_created_at_brin ON logs USING brin (created_at);
