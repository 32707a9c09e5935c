"""RELP, rsyslog's reliable event logging protocol (omrelp; librelp's doc/relp.md): the TCP listener's
connection with RELP's frames and an acknowledgement per message once committed.

    frame     TXNR SP COMMAND SP DATALEN [SP DATA] LF
    open      answered `TXNR rsp N 200 OK\\nrelp_version=0\\nrelp_software=…\\ncommands=syslog`
    syslog    DATA is one syslog message; answered `TXNR rsp 6 200 OK` only after the transaction holding
              it has committed, in the order the commands came (RELP requires it)
    close     answered `TXNR rsp 0`, then the connection is closed

When PostgreSQL is away, or the write queue is full, the messages read are held unacknowledged and the
connection is not read (librelp's window, 128 frames, then stops the sender) while the write is retried;
once PostgreSQL is back they are committed and acknowledged. No error response is sent: librelp's rsp
handler (src/scrsp.c) drops a frame answered with an error from its unacknowledged list and rsyslog does
not send it again (observed with rsyslog 8.2302: a `500` to one message, and that message never came back).
If the sender gives up first (omrelp's timeout, 90 s by default) and breaks the session, the held messages
are not written: librelp keeps every unacknowledged frame and sends them all again when it reconnects
(which it does when it next has a message to send). At shutdown what was read is written and acknowledged
before a `0 serverclose 0` hint and the close; with PostgreSQL away it is left unacknowledged instead.

A frame RELP cannot be (a header that does not parse, DATA not followed by LF) closes the connection, as the
protocol says; a DATALEN above SYSLOG_MAX_MESSAGE is read to its end and the message cut and flagged.
"""

from __future__ import annotations

import asyncio
import logging
import re

from app.config import Settings
from app.intake.writer import Writer
from app.syslog.sink import BATCH
from app.syslog.tcp import HIGH_WATER, Connection, StreamServer

log = logging.getLogger(__name__)

_HEADER = re.compile(rb"([0-9]{1,9}) ([A-Za-z]{1,32}) ([0-9]{1,9})")
# What the start of a header may look like while the rest has not arrived.
_PARTIAL_HEADER = re.compile(rb"[0-9]{1,9}(?: [A-Za-z]{0,32}(?: [0-9]{0,9})?)?")
OFFERS = b"200 OK\nrelp_version=0\nrelp_software=log-save-server\ncommands=syslog"
SERVERCLOSE = b"0 serverclose 0\n"

# (txnr, command, data, truncated)
Command = tuple[int, bytes, bytes, bool]


class FramingError(Exception):
    pass


class RelpFramer:
    """RELP frames out of a byte stream, holding at most about SYSLOG_MAX_MESSAGE bytes of one."""

    def __init__(self, max_message: int) -> None:
        self.max_message = max_message
        self.buffer = bytearray()
        # The frame being skipped past its kept part: (txnr, command, kept data, bytes left to skip).
        self.skipping: tuple[int, bytes, bytes, int] | None = None

    def feed(self, data: bytes) -> list[Command]:
        buffer = self.buffer
        buffer += data
        commands: list[Command] = []
        pos, size = 0, len(buffer)
        while pos < size:
            if self.skipping is not None:
                txnr, command, kept, left = self.skipping
                taken = min(left, size - pos)
                pos += taken
                left -= taken
                if left:
                    self.skipping = (txnr, command, kept, left)
                    continue
                if pos >= size:
                    self.skipping = (txnr, command, kept, 0)
                    break
                if buffer[pos] != 0x0A:
                    raise FramingError("DATA not followed by LF")
                pos += 1
                self.skipping = None
                commands.append((txnr, command, kept, True))
                continue
            if buffer[pos] in b"\r\n":  # tolerated between frames
                pos += 1
                continue
            header = _HEADER.match(buffer, pos)
            if header is None or header.end() >= size:
                if header is None and _PARTIAL_HEADER.fullmatch(buffer, pos) is None:
                    raise FramingError(f"not a RELP frame header: {bytes(buffer[pos : pos + 40])!r}")
                break
            txnr, command, length = int(header[1]), bytes(header[2]).lower(), int(header[3])
            after = header.end()
            if length == 0:
                if buffer[after] != 0x0A:
                    raise FramingError("a frame without DATA must end in LF")
                commands.append((txnr, command, b"", False))
                pos = after + 1
                continue
            if buffer[after] != 0x20:
                raise FramingError("DATALEN must be followed by SP and DATA")
            start = after + 1
            keep = min(length, self.max_message)
            if size - start < keep:
                break
            if length > keep:
                self.skipping = (txnr, command, bytes(buffer[start : start + keep]), length - keep)
                pos = start + keep
                continue
            if size - start < length + 1:
                break
            if buffer[start + length] != 0x0A:
                raise FramingError("DATA not followed by LF")
            commands.append((txnr, command, bytes(buffer[start : start + length]), False))
            pos = start + length + 1
        del buffer[:pos]
        return commands


def response(txnr: int, text: bytes) -> bytes:
    return b"%d rsp %d %s\n" % (txnr, len(text), text)


def _ok(txnr: int) -> bytes:
    return b"%d rsp 6 200 OK\n" % txnr


class RelpConnection(Connection):
    def __init__(self, server: StreamServer) -> None:
        super().__init__(server)
        self.relp = RelpFramer(server.settings.syslog_max_message)
        self.commands: list[Command] = []
        self.commands_bytes = 0
        self.broken = False
        self.client_closed = False

    def data_received(self, data: bytes) -> None:
        self.last_read = asyncio.get_running_loop().time()
        try:
            commands = self.relp.feed(data)
        except FramingError as exc:
            log.warning("syslog relp: closing a connection: %s", exc)
            self._break()
            return
        if commands:
            self.commands.extend(commands)
            self.commands_bytes += sum(len(c[2]) for c in commands)
            self.wakeup.set()
        if not self.paused and (len(self.commands) >= BATCH or self.commands_bytes >= HIGH_WATER):
            self.paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]

    def connection_lost(self, exc: Exception | None) -> None:
        # What was read and not written stays with the sender, which sends it again (see the docstring).
        self.broken = True
        super().connection_lost(exc)

    def finish(self) -> None:
        if self.ended:
            return
        self.ended = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
        self.wakeup.set()

    def _break(self) -> None:
        self.broken = True
        self.ended = True
        self.commands.clear()
        if self.transport is not None:
            self.transport.abort()
        self.wakeup.set()

    async def _serve(self) -> None:
        # One batch at a time: RELP answers in the order the commands came.
        try:
            while not self.broken:
                if not self.commands:
                    if self.ended:
                        break
                    self.wakeup.clear()
                    await self.wakeup.wait()
                    continue
                if self.commands[0][1] == b"syslog":
                    await self._messages()
                else:
                    self._command(self.commands.pop(0))
            if (
                not (self.broken or self.client_closed)
                and self.transport is not None
                and not self.transport.is_closing()
            ):
                # Everything read is acknowledged: tell the client before closing (a hint; librelp reconnects).
                self.transport.write(SERVERCLOSE)
        except Exception:
            log.exception("syslog relp: connection failed")
        finally:
            self.close()

    async def _messages(self) -> None:
        run = 0
        while run < len(self.commands) and run < BATCH and self.commands[run][1] == b"syslog":
            run += 1
        taken = self.commands[:run]
        del self.commands[:run]
        self.commands_bytes -= sum(len(c[2]) for c in taken)
        rows = self.sink.rows((data, cut) for _, _, data, cut in taken)
        if self.broken:
            return
        if not await self.sink.write(rows, wait_while_down=True, wanted=lambda: not self.broken):
            # The sender broke the session, or the server stops with PostgreSQL away: the sender keeps the
            # unacknowledged messages and sends them again.
            log.warning(
                "syslog relp: %d messages left unacknowledged for the sender to send again", len(rows)
            )
            self._break()
            return
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(_ok(txnr) for txnr, _, _, _ in taken))
        if (
            self.paused
            and not self.ended
            and len(self.commands) < BATCH // 2
            and self.commands_bytes < HIGH_WATER // 2
        ):
            self.paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]

    def _command(self, command: Command) -> None:
        txnr, name, _, _ = command
        assert self.transport is not None
        if name == b"open":
            self.transport.write(response(txnr, OFFERS))
        elif name == b"close":
            self.transport.write(b"%d rsp 0\n" % txnr)
            self.ended = self.client_closed = True
            self.commands.clear()
        else:
            self.transport.write(response(txnr, b"500 command not supported: " + name[:32]))


async def start(settings: Settings, writer: Writer, host: str) -> StreamServer:
    assert settings.syslog_relp_port is not None
    server = StreamServer(settings, writer, "relp", settings.syslog_relp_port, RelpConnection)
    await server.start(host)
    return server
