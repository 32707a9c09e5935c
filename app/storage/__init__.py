"""Where logs live and how long: the schema and its migrations, daily partitions, retention, the summary
behind /stats, and the housekeeping loop that runs them off the request path.

    migrations.py + schema/   versioned SQL, applied at start-up
    partitions.py             one table per UTC day, made ahead and on demand
    retention.py              whole old days dropped
    summary.py                exact counts per hour, service and level (GET /stats), per minute for LogQL
    maintenance.py            the loop: one process at a time (advisory lock)
    archive.py                closed days moved to Parquet files (ARCHIVE_URL)
    cold.py                   reading those files (DuckDB), beside PostgreSQL's rows
"""
