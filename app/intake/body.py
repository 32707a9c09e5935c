"""Receiving a request body: the size cap, a memory budget shared by all requests of a worker, and the
cut-offs for clients that stall or trickle.

Bodies in flight are what a hostile (or just broken) client can make a server hold: 60 connections that
each send 9 MB and stall would otherwise cost 550 MB. Each request takes its bytes from the worker's
budget (BODY_MEMORY_LIMIT) before it holds them, the declared Content-Length up front, and gives them
back when it is answered; past the budget a request gets 429 + Retry-After.
"""

from __future__ import annotations

import asyncio
import time
from typing import Self

from starlette.requests import Request

from app.config import Settings
from app.errors import Busy, PayloadTooLarge, RequestTimeout


class Budget:
    """Bytes of request bodies a worker holds at once (received or decoded)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def hold(self) -> Held:
        """`async with budget.hold() as held`: what `held` takes is given back when the block ends."""
        return Held(self)


class Held:
    """One request's share of the budget. An async context manager of its own rather than an
    @asynccontextmanager generator: every request enters one, and this costs a fifth as much."""

    __slots__ = ("budget", "size")

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.size = 0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.budget.used -= self.size

    def take(self, size: int) -> None:
        if self.budget.used + size > self.budget.limit:
            raise Busy(
                f"the server holds {self.budget.used} bytes of request bodies, its limit; retry shortly",
                retry_after=1,
            )
        self.budget.used += size
        self.size += size


async def read(request: Request, settings: Settings, held: Held) -> bytes:
    """The whole body: 413 past MAX_BODY_BYTES, 429 past the budget, 408 when the client stalls or trickles."""
    limit = settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit():
        if int(declared) > limit:
            raise PayloadTooLarge(f"request body is {declared} bytes; the limit is {limit}")
        held.take(int(declared))
    chunks: list[bytes] = []
    size = 0
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    try:
        # One timeout for the whole body, pushed back as chunks arrive: no task per chunk, and the timer is
        # replaced only when a quarter of the timeout has passed, not for every chunk of a large body. A
        # stall is therefore cut off after 3/4 to 4/4 of BODY_READ_TIMEOUT.
        timeout = settings.body_read_timeout
        async with asyncio.timeout(timeout) as deadline:
            pushed = loop.time()
            async for chunk in request.stream():
                if loop.time() - pushed > timeout / 4:
                    pushed = loop.time()
                    deadline.reschedule(pushed + timeout)
                size = _add(chunk, chunks, size, limit, held)
                elapsed = time.monotonic() - started
                if elapsed > settings.body_read_timeout and size < settings.body_min_rate * elapsed:
                    raise RequestTimeout(
                        f"the body arrived at {size / elapsed:.0f} bytes/s; the minimum is {settings.body_min_rate}"
                    )
    except TimeoutError:
        raise RequestTimeout(f"no body bytes arrived for {settings.body_read_timeout:g} s") from None
    return b"".join(chunks)


def _add(chunk: bytes, chunks: list[bytes], size: int, limit: int, held: Held) -> int:
    size += len(chunk)
    if size > limit:
        raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
    if size > held.size:
        held.take(size - held.size)
    chunks.append(chunk)
    return size
