"""uvicorn's httptools protocol with a header timeout, writing each response's head with its body.

uvicorn closes idle keep-alive connections, but not one that sends nothing, nor one that has started a
request and then sends its headers a byte at a time, or never finishes them: thousands of those would
hold a worker's sockets and memory forever (slowloris). Here a connection must finish each request's
headers within HEADER_TIMEOUT seconds of connecting or of that request's first byte, or it is closed.

uvicorn writes a response's status line and headers when the app starts the response, and its body when
the app sends it: two writes, two syscalls and two TCP segments for every small answer (at batches of 10,
one write fewer took the server's system CPU from about 33 to 25 µs a request). `_OneWrite` holds the
head of a response with a Content-Length until the body's first bytes and writes them together; the bytes
on the wire are the same. A response without a Content-Length (streamed, chunked), with none to come
(HEAD, an empty body) or an interim `100 Continue` is written as uvicorn writes it.
"""

from __future__ import annotations

import asyncio
from functools import cache
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from app.config import Settings


@cache
def _header_timeout() -> float:
    # Read once per worker process: uvicorn builds the protocol itself, with its own config only.
    return Settings().header_timeout


class HeaderTimeoutProtocol(HttpToolsProtocol):
    # One timer per connection, not one armed and cancelled for every request (a timer costs microseconds,
    # at batches of 10 a visible part of a request): it fires at the deadline it was set for, then looks
    # at the headers pending now, which may have arrived (nothing to do) or be a later request's (set for
    # that one's deadline).
    _header_timer: asyncio.TimerHandle | None = None
    _headers_due: float | None = None  # when the headers being received must be complete; None: none are

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._expect_headers()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._expect_headers()

    def on_headers_complete(self) -> None:
        self._headers_due = None
        cycle = self.cycle
        super().on_headers_complete()
        if self.cycle is not cycle and self.cycle is not None:  # a new request (not an upgrade)
            self.cycle.transport = _OneWrite(self.transport, self.cycle)  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)

    def _expect_headers(self) -> None:
        self._headers_due = self.loop.time() + _header_timeout()
        if self._header_timer is None:
            self._header_timer = self.loop.call_at(self._headers_due, self._check)

    def _check(self) -> None:
        self._header_timer = None
        due = self._headers_due
        if due is None:
            return
        if self.loop.time() < due:
            self._header_timer = self.loop.call_at(due, self._check)
        elif not self.transport.is_closing():
            self.transport.close()


class _OneWrite:
    """One response's view of the connection's transport: the head of a response with a body of known
    length waits for the body's first bytes, then both go in one write."""

    __slots__ = ("_cycle", "_head", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: RequestResponseCycle) -> None:
        self._transport = transport
        # Until the response's head is written. Then let go: the cycle holds this wrapper, and as a reference
        # cycle every request's scope, headers and state would wait for the garbage collector (measured: more
        # user CPU than the write saves) instead of being freed at once.
        self._cycle: RequestResponseCycle | None = cycle
        self._head: bytes | None = None

    def write(self, data: bytes) -> None:
        if self._head is not None:
            data, self._head = self._head + data, None
        elif self._cycle is not None and self._cycle.response_started:
            # The first write once the response has started is its head (a 100 Continue comes before).
            cycle, self._cycle = self._cycle, None
            if (
                cycle.chunked_encoding is False
                and cycle.expected_content_length
                and cycle.scope["method"] != "HEAD"
            ):
                self._head = data
                return
        self._transport.write(data)

    def close(self) -> None:
        # An app that fails after starting its response: the head goes out before the close, as without us.
        if self._head is not None:
            self._transport.write(self._head)
            self._head = None
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
