"""uvicorn's httptools protocol with a header timeout.

uvicorn closes idle keep-alive connections, but not one that sends nothing, nor one that has started a
request and then sends its headers a byte at a time, or never finishes them: thousands of those would
hold a worker's sockets and memory forever (slowloris). Here a connection must finish each request's
headers within HEADER_TIMEOUT seconds of connecting or of that request's first byte, or it is closed.
"""

from __future__ import annotations

import asyncio
from functools import cache

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.config import Settings


@cache
def _header_timeout() -> float:
    # Read once per worker process: uvicorn builds the protocol itself, with its own config only.
    return Settings().header_timeout


class HeaderTimeoutProtocol(HttpToolsProtocol):
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(_header_timeout(), self._expire)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expire(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()
