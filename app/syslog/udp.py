"""Syslog over UDP (RFC 5426): one message per datagram.

A datagram cannot be pushed back on, so what cannot be stored is dropped and counted
(logsave_syslog_dropped_total{transport="udp"}): datagrams past QUEUE waiting while the writer is busy
(`queue_full`), and what was read while PostgreSQL is away (`unavailable`). A datagram longer than
SYSLOG_MAX_MESSAGE is cut there and flagged truncated.
"""

from __future__ import annotations

import asyncio
import logging
import socket

from app.config import Settings
from app.intake.writer import Writer
from app.syslog.framing import Frame
from app.syslog.sink import BATCH, Sink

log = logging.getLogger(__name__)

# Datagrams held while a write is in progress; past this they are dropped.
QUEUE = 20_000
# Kernel receive buffer asked for (Linux caps it at net.core.rmem_max): bursts wait there, not dropped.
RECEIVE_BUFFER = 8 * 1024 * 1024


class UdpServer(asyncio.DatagramProtocol):
    def __init__(self, settings: Settings, writer: Writer) -> None:
        self.sink = Sink(settings, writer, "udp")
        self.max_message = settings.syslog_max_message
        self.pending: list[Frame] = []
        self.wakeup = asyncio.Event()
        self.transport: asyncio.DatagramTransport | None = None
        self.task: asyncio.Task[None] | None = None
        self.stopping = False

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        # SO_REUSEPORT: every worker reads the port; the kernel spreads senders over them.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        except OSError:
            pass
        sock.bind((host, port))
        self.transport, _ = await loop.create_datagram_endpoint(lambda: self, sock=sock)
        self.task = loop.create_task(self._run())

    def datagram_received(self, data: bytes, addr: object) -> None:
        if len(self.pending) >= QUEUE:
            self.sink.received.inc()
            self.sink.dropped(1, "queue_full")
            return
        if len(data) > self.max_message:
            self.pending.append((data[: self.max_message], True))
        else:
            self.pending.append((data, False))
        self.wakeup.set()

    async def _run(self) -> None:
        while True:
            if not self.pending:
                if self.stopping:
                    return
                self.wakeup.clear()
                await self.wakeup.wait()
                continue
            frames = self.pending[:BATCH]
            del self.pending[:BATCH]
            try:
                rows = self.sink.rows(frames)
                if not await self.sink.write(rows, wait_while_down=False):
                    self.sink.dropped(len(rows), "unavailable")
            except Exception:
                log.exception("syslog udp: %d messages not stored", len(frames))
                self.sink.dropped(len(frames), "error")

    async def stop(self, timeout: float) -> None:
        """Stop reading; write what was read (within `timeout`)."""
        if self.transport is not None:
            self.transport.close()
        self.stopping = True
        self.wakeup.set()
        if self.task is not None:
            _, late = await asyncio.wait([self.task], timeout=timeout)
            for task in late:
                task.cancel()


async def start(settings: Settings, writer: Writer, host: str) -> UdpServer:
    assert settings.syslog_udp_port is not None
    server = UdpServer(settings, writer)
    await server.start(host, settings.syslog_udp_port)
    return server
