"""The client suite: what logsave costs the application, and what one process can send.

* `log()` on the caller's thread, each call timed, while the sender is busy sending to the real server
  (`python -m app`), and again with the server down (connection refused, the sender retrying);
* the handler's share of `logger.info()`: the same call with LogSaveHandler and with a handler that does
  nothing, both timed per call;
* one process, one client, the real server: logs acknowledged per second from the first `log()` until
  `flush()` returns, and how many are stored after the client is closed (loss).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import logsave

from bench import db, http

CALLS = 200_000
THROUGHPUT_LOGS = 300_000


def _timed_calls(call: Callable[[int], None], count: int) -> dict[str, float]:
    clock = time.perf_counter_ns
    times = []
    for i in range(count):
        started = clock()
        call(i)
        times.append(clock() - started)
    micros = [t / 1000 for t in times]
    return {"p50_us": round(db.percentile(micros, 50), 3), "p99_us": round(db.percentile(micros, 99), 3)}


def _client_cost(url: str, count: int) -> dict[str, float]:
    client = logsave.LogClient(url, service="bench-client", max_queue=count + 1, exit_timeout=1.0)
    try:
        return _timed_calls(lambda i: client.log("INFO", "order placed", user_id="u-1042", order_id=i), count)
    finally:
        client.close(timeout=1.0)


def _handler_share(url: str, count: int) -> dict[str, float]:
    logger = logging.getLogger("bench.client")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    results = {}
    for name, handler in (
        ("null", logging.NullHandler()),
        (
            "logsave",
            logsave.LogSaveHandler(url=url, service="bench-handler", max_queue=count + 1, exit_timeout=1.0),
        ),
    ):
        logger.handlers[:] = [handler]
        results[name] = _timed_calls(
            lambda i: logger.info("order %d placed", i, extra={"user_id": "u-1042"}), count
        )
        handler.close()
    logger.handlers[:] = []
    return {
        "logger_info_p50_us": results["logsave"]["p50_us"],
        "null_handler_p50_us": results["null"]["p50_us"],
        "handler_share_p50_us": round(results["logsave"]["p50_us"] - results["null"]["p50_us"], 3),
        "logger_info_p99_us": results["logsave"]["p99_us"],
    }


async def _stored(dsn: str, service: str) -> int:
    conn = await db.connect(dsn)
    try:
        return await conn.fetchval("SELECT count(*) FROM logs WHERE service = $1", service)
    finally:
        await conn.close()


def _throughput(url: str, dsn: str, count: int) -> dict[str, Any]:
    import asyncio

    # Default settings. The producer logs as fast as it can but, unlike a burst, gives way while the queue
    # holds more than a few batches, so what is measured is the sender's rate, not the queue's bound.
    client = logsave.LogClient(url, service="bench-throughput")
    started = time.perf_counter()
    for i in range(count):
        client.log("INFO", "order placed", user_id="u-1042", order_id=i)
        if i % 1000 == 999:
            while client.stats()["queued"] > 20_000:
                time.sleep(0.001)
    flushed = client.flush(300)
    seconds = time.perf_counter() - started
    client.close()
    stored = asyncio.run(_stored(dsn, "bench-throughput"))
    return {"logs": count, "seconds": round(seconds, 3), "logs_per_s": round(count / seconds, 1),
            "flushed": flushed, "stored": stored, "lost": count - stored, **client.stats()}  # fmt: skip


def run(
    dsn: str, progress: Callable[[str], None], calls: int = CALLS, logs: int = THROUGHPUT_LOGS
) -> dict[str, Any]:
    import asyncio

    asyncio.run(http._count(dsn, truncate=True))
    with http.server(dsn, "group") as (_, port):
        url = f"http://127.0.0.1:{port}"
        progress("client: log() with the sender busy")
        busy = _client_cost(url, calls)
        progress("client: logger.info() through the handler")
        handler = _handler_share(url, calls)
        asyncio.run(http._count(dsn, truncate=True))
        progress("client: one process's throughput")
        throughput = _throughput(url, dsn, logs)
    progress("client: log() with the server down")
    down = _client_cost(f"http://127.0.0.1:{http._free_port()}", calls)
    asyncio.run(http._count(dsn, truncate=True))
    return {"log_busy": busy, "log_server_down": down, "handler": handler, "throughput": throughput}
