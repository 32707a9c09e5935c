"""LogSaveHandler: a logging.Handler that puts records on a LogClient's queue and returns.

Two things differ from an ordinary handler, both so that logging can never deadlock or recurse through it:
`handle()` takes no lock (putting on the queue is thread-safe by itself), so logging's handler lock is never
held while waiting on the client; and records made on the sender thread are ignored.
"""

from __future__ import annotations

import logging
from typing import Any

from logsave.client import LogClient, on_sender_thread

__all__ = ["LogSaveHandler"]


class LogSaveHandler(logging.Handler):
    """`LogSaveHandler(client=None, **LogClient arguments)`: with no client, makes (and owns) one."""

    def __init__(
        self, client: LogClient | None = None, *, level: int = logging.NOTSET, **arguments: Any
    ) -> None:
        super().__init__(level)
        self._owns_client = client is None
        self.client = client if client is not None else LogClient(**arguments)
        # flush() is called by logging.shutdown() and by dictConfig() when it replaces handlers: bounded.
        self.flush_timeout = 2.0

    def createLock(self) -> None:
        self.lock = None  # no handler lock: see the module docstring

    def handle(self, record: logging.LogRecord) -> logging.LogRecord | bool:
        if getattr(on_sender_thread, "active", False):
            return False  # the sender's own doings never come back to its queue
        rv = self.filter(record)
        if rv:
            self.emit(record if rv is True else rv)  # type: ignore[arg-type]
        return rv

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not take the application down
            message = f"{record.msg!r} % {record.args!r}"
        self.client._put(("record", record, message), len(message) + 256)

    def flush(self) -> None:
        self.client.flush(self.flush_timeout)

    def close(self) -> None:
        if self._owns_client:
            self.client.close()
        super().close()
