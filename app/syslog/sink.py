"""Where every listener's messages go: parsed and mapped (parse.py, mapping.py), validated into rows by
app/intake/rows.py, and written through the shared writer (group commit, its queue limit, its metrics), as
every HTTP front door's logs are.

What a listener does when the write cannot happen now is its own (`write` says which happened): a full
write queue is waited out (the connection is not read meanwhile: backpressure); PostgreSQL away is waited
out by TCP, TLS and RELP (not read meanwhile; RELP's messages stay unacknowledged), and makes UDP drop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from app import metrics
from app.config import Settings
from app.errors import Busy, InvalidLogs, ServiceUnavailable
from app.intake.rows import Received, parse_values
from app.intake.writer import Batch, Row, Writer
from app.syslog import mapping
from app.syslog.framing import Frame
from app.syslog.parse import Message, parse

log = logging.getLogger(__name__)

# Messages per write: what one connection hands the writer at once (the group commit joins connections).
BATCH = 1000


class Sink:
    """One transport's path into the writer, and its counters."""

    def __init__(self, settings: Settings, writer: Writer, transport: str) -> None:
        self.writer = writer
        self.service = settings.syslog_service
        self.window = settings.created_at_window
        self.transport = transport
        self.received = metrics.SYSLOG_RECEIVED.labels(transport=transport)
        self.stored = metrics.SYSLOG_STORED.labels(transport=transport)
        self.truncated = metrics.SYSLOG_TRUNCATED.labels(transport=transport)
        self.unparsed = metrics.SYSLOG_UNPARSED.labels(transport=transport)
        # Set while the server shuts down: a wait for PostgreSQL gives up instead of holding the exit.
        self.stopping = False

    def rows(self, frames: Iterable[Frame]) -> list[Row]:
        """The frames as rows: every message becomes one (a MSG whose JSON the schema refuses is kept as
        text, with the reason in metadata), so nothing read is lost to validation."""
        received = datetime.now(UTC)
        now = Received(received, self.window)
        service = self.service
        rows: list[Row] = []
        truncated = unparsed = 0
        for data, cut in frames:
            message = parse(data, received)
            truncated += cut
            unparsed += not message.syslog
            # Strings hold U+0000 only from a NUL byte or JSON's escape for it: most rows skip that check.
            strip_nul = b"\x00" in data or b"\\u0000" in data
            built = mapping.row(message, service, cut, now, strip_nul)
            rows.append(built if built is not None else self._validated(message, cut, received))
        self.received.inc(len(rows))
        if truncated:
            self.truncated.inc(truncated)
        if unparsed:
            self.unparsed.inc(unparsed)
        return rows

    def _validated(self, message: Message, cut: bool, received: datetime) -> Row:
        """What `mapping.row` leaves: the entry through the generic validation; one the schema refuses
        (rare, so not fast) kept as text, with the reason in metadata."""
        one, problems = self._validate([mapping.entry(message, self.service, cut)], received)
        if problems:
            kept = mapping.plain(message, self.service, cut)
            kept["metadata"]["rejected"] = "; ".join(f"{p['field']}: {p['message']}" for p in problems)[:1000]
            one, _ = self._validate([kept], received)
        return one[0]

    def _validate(self, entries: list[dict[str, Any]], received: datetime) -> tuple[list[Row], list[Any]]:
        try:
            return parse_values(entries, len(entries), received, self.window)
        except InvalidLogs as exc:
            return [], exc.errors

    async def write(
        self, rows: list[Row], *, wait_while_down: bool, wanted: Callable[[], bool] | None = None
    ) -> bool:
        """Write `rows`, waiting while the write queue is full. True once committed; False when PostgreSQL
        is away (at once unless `wait_while_down`, else only when the server is stopping), or when
        `wanted()` turns false while waiting (a RELP sender that gave up and will send them again)."""
        if not rows:
            return True
        pause = 0.05
        while True:
            if wanted is not None and not wanted():
                return False
            try:
                await self.writer.write(Batch(rows, b""))
            except Busy:
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)
                continue
            except ServiceUnavailable as exc:
                if not wait_while_down or self.stopping:
                    return False
                log.warning("syslog %s: PostgreSQL unavailable, not reading until it is back: %s",
                            self.transport, exc.message)  # fmt: skip
                await asyncio.sleep(min(exc.retry_after, 5))
                continue
            except InvalidLogs as exc:
                # PostgreSQL refused rows the schema took: nothing to retry, and nobody to tell but the log.
                metrics.SYSLOG_DROPPED.labels(transport=self.transport, reason="refused").inc(len(rows))
                log.error(
                    "syslog %s: PostgreSQL refused %d messages: %s", self.transport, len(rows), exc.message
                )
                return True
            self.stored.inc(len(rows))
            return True

    def dropped(self, count: int, reason: str) -> None:
        metrics.SYSLOG_DROPPED.labels(transport=self.transport, reason=reason).inc(count)
