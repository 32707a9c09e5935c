"""Syslog over TCP (RFC 6587), and the connection TLS (tls.py) runs on too.

Each connection reads frames (framing.py) into a list while DEPTH tasks of its own write what has been read
(sink.py), each a batch at a time, and the next messages accumulate: a busy sender's messages go out in
batches as large as one commit takes to write. Memory is bounded per connection: past BATCH messages or
HIGH_WATER bytes waiting (besides the DEPTH batches being written) the connection stops being read until a
write is done, and that is also how a full write queue, or PostgreSQL away, pushes back on the sender
(TCP's own flow control; nothing is dropped).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

from app.config import Settings
from app.intake.writer import Writer
from app.syslog.framing import Frame, Framer
from app.syslog.sink import BATCH, Sink

log = logging.getLogger(__name__)

# Bytes read and not yet written, per connection, past which it is not read.
HIGH_WATER = 1024 * 1024
# Batches of one connection being written at once.
DEPTH = 2


class StreamServer:
    """One TCP or TLS listener and its connections."""

    def __init__(
        self,
        settings: Settings,
        writer: Writer,
        transport: str,
        port: int,
        protocol: type[Connection] | None = None,
    ) -> None:
        self.settings = settings
        self.protocol = protocol or Connection
        self.sink = Sink(settings, writer, transport)
        self.port = port
        self.connections: set[Connection] = set()
        self.server: asyncio.Server | None = None

    async def start(self, host: str, ssl_context: ssl.SSLContext | None = None) -> None:
        loop = asyncio.get_running_loop()
        extra: dict[str, Any] = {"ssl": ssl_context, "ssl_handshake_timeout": 30} if ssl_context else {}
        # SO_REUSEPORT: every worker process listens on the port and the kernel spreads connections over
        # them (app/syslog/__init__.py says why).
        self.server = await loop.create_server(
            lambda: self.protocol(self), host, self.port, reuse_port=True, backlog=1024, **extra
        )

    async def stop(self, timeout: float) -> None:
        """Stop accepting and reading; write what was read (within `timeout`), then close."""
        if self.server is not None:
            self.server.close()
        for connection in list(self.connections):
            connection.finish()
        tasks = [c.task for c in self.connections if c.task is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=timeout)
            self.sink.stopping = True
            if late:
                await asyncio.wait(late, timeout=5)
        for connection in list(self.connections):
            connection.close()


class Connection(asyncio.Protocol):
    def __init__(self, server: StreamServer) -> None:
        self.server = server
        self.sink = server.sink
        self.framer = Framer(server.settings.syslog_max_message)
        self.pending: list[Frame] = []
        self.pending_bytes = 0
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None
        self.wakeup = asyncio.Event()
        self.paused = False
        self.ended = False
        self.idle_timeout = server.settings.syslog_idle_timeout
        self.last_read = 0.0
        self.idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment] - uvloop's is not an asyncio.Transport subclass
        if len(self.server.connections) >= self.server.settings.syslog_max_connections:
            log.warning("syslog %s: %d connections open, the limit; closing a new one",
                        self.sink.transport, len(self.server.connections))  # fmt: skip
            transport.abort()
            return
        self.server.connections.add(self)
        loop = asyncio.get_running_loop()
        self.last_read = loop.time()
        self.idle = loop.call_later(self.idle_timeout, self._check_idle)
        self.task = loop.create_task(self._serve())

    def data_received(self, data: bytes) -> None:
        self.last_read = asyncio.get_running_loop().time()
        frames = self.framer.feed(data)
        if frames:
            self.pending.extend(frames)
            self.pending_bytes += sum(len(frame[0]) for frame in frames)
            self.wakeup.set()
        if not self.paused and (len(self.pending) >= BATCH or self.pending_bytes >= HIGH_WATER):
            self.paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]

    def eof_received(self) -> bool:
        self.finish()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.finish()
        if self.idle is not None:
            self.idle.cancel()

    def finish(self) -> None:
        """Read nothing more: what is buffered becomes the last messages, and the task ends once they are
        written."""
        if self.ended:
            return
        self.ended = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
        self.pending.extend(self.framer.finish())
        self.wakeup.set()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.server.connections.discard(self)

    def _check_idle(self) -> None:
        loop = asyncio.get_running_loop()
        quiet = loop.time() - self.last_read
        if quiet >= self.idle_timeout and not self.pending:
            self.close()
        else:
            self.idle = loop.call_later(max(self.idle_timeout - quiet, 1.0), self._check_idle)

    async def _serve(self) -> None:
        """DEPTH writers drain the connection's messages: while one batch is being committed the next is
        built and queued, so a connection keeps the group commit fed as an HTTP client with DEPTH requests
        in flight would (order between batches does not matter on TCP: no acknowledgements)."""
        try:
            await asyncio.gather(*(self._drain() for _ in range(DEPTH)))
        except Exception:
            # A bug, not the sender's doing: the connection is closed rather than left unread forever.
            log.exception("syslog %s: connection failed", self.sink.transport)
        finally:
            self.ended = True
            self.close()

    async def _drain(self) -> None:
        while True:
            if not self.pending:
                if self.ended:
                    return
                self.wakeup.clear()
                await self.wakeup.wait()
                continue
            frames = self.pending[:BATCH]
            del self.pending[:BATCH]
            self.pending_bytes -= sum(len(frame[0]) for frame in frames)
            rows = self.sink.rows(frames)
            if not await self.sink.write(rows, wait_while_down=True):
                # Only when stopping with PostgreSQL away: nothing left to do with what was read.
                self.sink.dropped(len(rows) + len(self.pending), "unavailable")
                log.error("syslog %s: PostgreSQL unavailable at shutdown, %d messages not stored",
                          self.sink.transport, len(rows) + len(self.pending))  # fmt: skip
                self.pending.clear()
                return
            if self.paused and not self.ended and self._below_low_water():
                self.paused = False
                self.transport.resume_reading()  # type: ignore[union-attr]

    def _below_low_water(self) -> bool:
        return len(self.pending) < BATCH // 2 and self.pending_bytes < HIGH_WATER // 2


async def start(settings: Settings, writer: Writer, host: str) -> StreamServer:
    assert settings.syslog_tcp_port is not None
    server = StreamServer(settings, writer, "tcp", settings.syslog_tcp_port)
    await server.start(host)
    return server
