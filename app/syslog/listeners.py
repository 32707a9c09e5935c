"""Start and stop the configured syslog listeners, from the app's lifespan."""

from __future__ import annotations

import logging
from typing import Protocol

from app.config import Settings
from app.intake.writer import Writer

log = logging.getLogger(__name__)


class _Listener(Protocol):
    async def stop(self, timeout: float) -> None: ...


class Listeners:
    def __init__(self, settings: Settings, writer: Writer) -> None:
        self.settings = settings
        self.writer = writer
        self.running: list[_Listener] = []

    async def start(self) -> None:
        """Bind every configured port; a port that cannot be bound fails start-up."""
        from app.syslog import relp, tcp, tls, udp

        settings, host = self.settings, self.settings.syslog_host or self.settings.server_host
        starts = (
            (settings.syslog_tcp_port, tcp.start),
            (settings.syslog_udp_port, udp.start),
            (settings.syslog_tls_port, tls.start),
            (settings.syslog_relp_port, relp.start),
        )
        try:
            for port, start in starts:
                if port is not None:
                    self.running.append(await start(settings, self.writer, host))
        except BaseException:
            await self.stop()
            raise
        if self.running:
            log.info("syslog listening on %s", host)

    async def stop(self) -> None:
        """Stop accepting and reading; write what was read and acknowledge it (RELP); close."""
        for listener in self.running:
            await listener.stop(self.settings.shutdown_timeout)
        self.running = []
