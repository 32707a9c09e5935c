"""log-save-server: batches of structured logs over HTTP, stored in PostgreSQL with COPY."""

__version__ = "1.0.0"
